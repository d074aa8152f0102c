"""Test sender for `bridge --mrd-listen`: real MRD streams written by the `ismrmrd` package (ismrmrd.serialization).

    python -m mindsemantix.oracles.mrd_send HOST PORT --out DIR [--volumes N] [--start K] [--mode slices|volumes]
        [--measurement ID] [--drop-after M] [--extras] [--change-dims-at K] [--seed S]

Sends config text, the XML header (measurementID, TR 1500 ms, slice limits), then repetitions K..K+N-1 as MRD images
(one 2-D image per slice, slices in shuffled order, or one 3-D image per volume), int16 pixels, an oblique geometry;
then a close message. --extras also sends an acquisition, a waveform, a text and an ndarray message (the receiver
must skip them). --drop-after M closes the socket without a close message after M volumes (a sender that vanishes).
--change-dims-at K sends repetition K with a different matrix. Writes what it sent: DIR/vol-<rep>.f32 (float32,
x fastest = read direction) and DIR/geometry.json (dims, fov, position, directions, per-volume slice positions).
"""
import argparse
import json
import os
import socket

import numpy as np


def header(measurement, nslices, tr_ms):
    import ismrmrd.xsd as x
    enc = x.encodingType(
        encodedSpace=x.encodingSpaceType(matrixSize=x.matrixSizeType(x=64, y=48, z=1), fieldOfView_mm=x.fieldOfViewMm(x=192.0, y=144.0, z=3.5)),
        reconSpace=x.encodingSpaceType(matrixSize=x.matrixSizeType(x=64, y=48, z=1), fieldOfView_mm=x.fieldOfViewMm(x=192.0, y=144.0, z=3.5)),
        encodingLimits=x.encodingLimitsType(slice=x.limitType(minimum=0, maximum=nslices - 1, center=nslices // 2)),
        trajectory=x.trajectoryType.CARTESIAN,
    )
    return x.ismrmrdHeader(
        subjectInformation=x.subjectInformationType(patientID="phantom"),
        measurementInformation=x.measurementInformationType(measurementID=measurement, patientPosition=x.patientPositionType.HFS),
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=123_000_000),
        encoding=[enc],
        sequenceParameters=x.sequenceParametersType(TR=[tr_ms]),
    )


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def main(argv=None):
    import ismrmrd
    from ismrmrd.serialization import ConfigText, ProtocolSerializer
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--volumes", type=int, default=4)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--mode", choices=["slices", "volumes"], default="slices")
    ap.add_argument("--measurement", default="12345_67890_1")
    ap.add_argument("--drop-after", type=int)
    ap.add_argument("--extras", action="store_true")
    ap.add_argument("--change-dims-at", type=int)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    nx, ny, nz = 64, 48, 6
    fov = [192.0, 144.0, 3.5]  # per slice; a 3-D image's z FOV is the slab
    # an oblique stack (LPS): read/phase/slice form a right-handed frame, rotated off the magnet axes
    c, s = np.cos(0.2), np.sin(0.2)
    read = unit([c, s, 0.1])
    phase = unit(np.cross(unit([0.05, 0.1, 1.0]), read))
    slice_dir = unit(np.cross(read, phase))
    centre = np.array([4.5, -12.25, 20.0])
    step = 4.0  # slice spacing (thickness 3.5 + gap 0.5)
    rng = np.random.default_rng(a.seed)
    geometry = {"dims": [nx, ny, nz], "fov": fov, "step": step, "centre": centre.tolist(), "read": read.tolist(),
                "phase": phase.tolist(), "slice": slice_dir.tolist(), "tr": 1.5}
    with open(os.path.join(a.out, "geometry.json"), "w") as f:
        json.dump(geometry, f)
    sock = socket.create_connection((a.host, a.port))
    stream = sock.makefile("wb")
    ser = ProtocolSerializer(stream)
    ser.serialize(ConfigText("<config><name>mindsemantix-test</name></config>"))
    ser.serialize(header(a.measurement, nz, 1500.0))
    if a.extras:
        acq = ismrmrd.Acquisition.from_array(np.zeros((2, 32), dtype=np.complex64))
        ser.serialize(acq)
        ser.serialize("a text message the bridge does not use")
        ser.serialize(np.arange(12, dtype=np.float32).reshape(3, 4))
        ser.serialize(ismrmrd.Waveform.from_array(np.zeros((2, 10), dtype=np.uint32)))
    sent = 0
    for rep in range(a.start, a.start + a.volumes):
        mx, my = (nx, ny) if rep != a.change_dims_at else (nx // 2, ny)
        vol = rng.integers(-2000, 30000, size=(nz, my, mx), dtype=np.int16)  # (z, y, x): x fastest on the wire
        vol.astype("<f4").tofile(os.path.join(a.out, f"vol-{rep}.f32"))
        common = dict(read_dir=tuple(read), phase_dir=tuple(phase), slice_dir=tuple(slice_dir), repetition=rep,
                      image_series_index=1, image_type=ismrmrd.IMTYPE_MAGNITUDE)
        if a.mode == "volumes":
            img = ismrmrd.Image.from_array(vol, field_of_view=(fov[0], fov[1], step * nz), position=tuple(centre),
                                           image_index=rep, **common)
            ser.serialize(img)
        else:
            for k in rng.permutation(nz):  # slices arrive in any order
                pos = centre + (k - (nz - 1) / 2) * step * slice_dir
                img = ismrmrd.Image.from_array(vol[k], field_of_view=tuple(fov), position=tuple(pos), slice=int(k),
                                               image_index=rep * nz + int(k), **common)
                ser.serialize(img)
        stream.flush()
        sent += 1
        if a.drop_after is not None and sent >= a.drop_after:
            stream.flush()
            sock.close()  # vanish: no close message
            return
    ser.close()
    stream.flush()
    # wait for the receiver's own close before going
    sock.settimeout(10)
    try:
        sock.recv(2)
    except OSError:
        pass
    sock.close()


if __name__ == "__main__":
    main()
