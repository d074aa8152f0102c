"""The MRD test sender (mindsemantix.oracles.mrd_send) writes streams the ismrmrd package itself reads back: the
bridge's MRD tests rely on it being a real MRD stream, so check it with the package's ProtocolDeserializer."""
import io
import json
import socket
import threading

import numpy as np
import pytest

ismrmrd = pytest.importorskip("ismrmrd")


def _receive(srv, buf):
    conn, _ = srv.accept()
    with conn:
        while True:
            d = conn.recv(65536)
            if not d:
                return
            buf.extend(d)
            if buf[-2:] == b"\x04\x00":
                conn.sendall(b"\x04\x00")
                return


@pytest.mark.parametrize("mode", ["slices", "volumes"])
def test_mrd_send_stream_reads_back(tmp_path, mode):
    from ismrmrd.serialization import ProtocolDeserializer
    from mindsemantix.oracles import mrd_send
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    buf = bytearray()
    t = threading.Thread(target=_receive, args=(srv, buf))
    t.start()
    mrd_send.main(["127.0.0.1", str(srv.getsockname()[1]), "--out", str(tmp_path), "--volumes", "2", "--mode", mode, "--extras"])
    t.join(10)
    srv.close()
    objs = list(ProtocolDeserializer(io.BytesIO(bytes(buf))).deserialize())
    images = [o for o in objs if isinstance(o, ismrmrd.Image)]
    geo = json.loads((tmp_path / "geometry.json").read_text())
    nx, ny, nz = geo["dims"]
    assert any(isinstance(o, ismrmrd.Acquisition) for o in objs)
    assert len(images) == (2 * nz if mode == "slices" else 2)
    for rep in range(2):
        sent = np.fromfile(tmp_path / f"vol-{rep}.f32", dtype="<f4").reshape(nz, ny, nx)
        mine = [im for im in images if im.repetition == rep]
        if mode == "slices":
            got = np.stack([next(im for im in mine if im.slice == k).data[0, 0] for k in range(nz)])
        else:
            got = mine[0].data[0]
        np.testing.assert_array_equal(got.astype(np.float32), sent)
