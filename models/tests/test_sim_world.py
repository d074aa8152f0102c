"""The stimulus world: deterministic scenes, COCO-like captions, a test split of novel compositions."""
import numpy as np

from mindsemantix.sim import world as w


def test_same_index_same_image_and_captions():
    a, b = w.image_array(321), w.image_array(321)
    assert a.shape == (256, 256, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    w.scene.cache_clear()
    assert w.scene(321).captions == w.scene(321).captions
    assert not np.array_equal(a, w.image_array(322))


def test_five_distinct_captions_that_mention_the_main_object():
    for i in list(range(0, 20)) + list(range(300, 340)):
        s = w.scene(i)
        assert len(s.captions) == 5 and len(set(s.captions)) == 5
        cat = s.primary.category
        names = {cat, w._plural(cat)} | set(w.SYNONYMS[cat]) | {w._plural(x) for x in w.SYNONYMS[cat]}
        hits = sum(any(n in c.lower() for n in names) for c in s.captions)
        assert hits >= 4, s.captions  # like COCO, nearly every reference names the main object
        lengths = [len(c.split()) for c in s.captions]
        assert max(lengths) - min(lengths) >= 2  # phrasing and detail differ


def test_test_scenes_are_novel_compositions():
    held = w.held_out_pairs()
    assert len(held) == 2 * len(w.CATEGORIES)
    for i in range(0, w.N_TEST, 7):
        s = w.scene(i)
        assert s.split == "test" and (s.primary.category, s.primary.colour) in held
    for i in range(w.N_TEST, w.N_TEST + 1500):
        s = w.scene(i)
        assert s.split == "train"
        for g in (s.primary, s.secondary):
            if g is not None:
                assert (g.category, g.colour) not in held


def test_world_is_varied():
    scenes = [w.scene(i) for i in range(300, 1300)]
    assert len({s.primary.category for s in scenes}) == len(w.CATEGORIES)
    assert len({s.background for s in scenes}) == len(w.BACKGROUNDS)
    assert {s.primary.count for s in scenes} == {1, 2, 3}
    assert {s.relation for s in scenes} == set(w.RELATIONS) | {None}
    assert len({s.captions[0] for s in scenes}) > 900
