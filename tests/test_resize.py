"""data_prep --resize: how an image of another shape is brought to the set's one size (trim, pad,
crop, stretch), recorded with the dataset and the model, so that predict and serve fit a new image by the
rule the model was trained with, and a split of references reads its files by the rule it recorded."""
import json

import numpy as np
from PIL import Image

from app.data import image_files
from app.data.split_files import read_split
from app.inference import to_model_input
from app.recipe import InputSpec

RED, BLUE = (255, 0, 0), (0, 0, 255)


def wide_image(width: int = 40, height: int = 20) -> np.ndarray:
    """Red at its left end, blue at its right end, grey between: what a rule keeps is plain to see."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[:, :6], image[:, -6:] = RED, BLUE
    return image


def test_each_rule_fits_a_wide_image_as_it_says():
    image = wide_image()
    pad, crop, stretch = (image_files.fit_array(image, 3, (20, 20), rule) for rule in ("pad", "crop", "stretch"))
    # pad: the whole image, 20x10, in the middle rows; black above and below; both ends kept
    assert pad[:4].max() == 0 and pad[-4:].max() == 0
    assert tuple(pad[10, 0]) == RED and tuple(pad[10, -1]) == BLUE
    # crop: the centre 20 columns; both ends cut off, no border
    assert (crop == 128).all()
    # trim (a 40x20 image is 2:1, beyond 4:3): the centre 27 columns (6-32), 20x15 once scaled, in the
    # middle rows: both ends (6 columns each) cut off, a black border above and below
    trim = image_files.fit_array(image, 3, (20, 20), "trim")
    assert trim[:2].max() == 0 and trim[-2:].max() == 0 and (trim[4:16] == 128).all()
    # an image within 4:3 is trimmed of nothing: padded as pad pads it
    within = wide_image(width=26)
    assert np.array_equal(image_files.fit_array(within, 3, (20, 20), "trim"),
                          image_files.fit_array(within, 3, (20, 20), "pad"))
    # a tall image keeps its centre rows, 4:3 of a square target, the same way turned
    tall = np.ascontiguousarray(image.transpose(1, 0, 2))
    assert np.array_equal(image_files.fit_array(tall, 3, (20, 20), "trim"), trim.transpose(1, 0, 2))
    # stretch: both ends, over every row, no border
    assert tuple(stretch[0, 0]) == RED and tuple(stretch[-1, -1]) == BLUE and stretch.min(axis=2).max() == 128
    # a greyscale fit pads with black too
    assert image_files.fit_array(image, 1, (20, 20), "pad")[:4].max() == 0


def test_a_recorded_rule_is_found_by_its_description_and_an_old_recipe_fits_by_crop():
    for name, description in image_files.RESIZE_RULES.items():
        assert image_files.resize_rule(description) == name and image_files.resize_rule(name) == name
    assert image_files.resize_rule(None) == "crop"  # every image had the size, or before --resize


def test_predict_fits_a_new_image_by_the_rule_the_model_was_trained_with():
    image = wide_image()
    for recorded, rule in ((image_files.RESIZE_RULES["pad"], "pad"), (image_files.RESIZE_RULES["stretch"], "stretch"),
                           (image_files.RESIZE_RULES["trim"], "trim"),
                           (image_files.RESIZE_RULES["crop"], "crop"), (None, "crop")):
        spec = InputSpec(channels=3, size=(20, 20), mean=(0, 0, 0), std=(1, 1, 1), resize=recorded)
        assert np.array_equal(to_model_input(image, spec), image_files.fit_array(image, 3, (20, 20), rule)), recorded


def test_a_light_scan_is_inverted_before_it_is_padded():
    """A digit-like model (light strokes on black) pads with black in training: a light scan's border
    must come out black too, not white."""
    scan = np.full((20, 40), 230, np.uint8)
    scan[5:15, 18:22] = 20  # a dark stroke
    spec = InputSpec(channels=1, size=(20, 20), mean=(0,), std=(1,), resize=image_files.RESIZE_RULES["pad"],
                     invert_light_background=True)
    fitted = to_model_input(scan, spec)
    assert fitted[:4].max() == 0 and fitted[10, 10] > 200  # black border, the stroke light


def write_wide_folder(root, per_class: int = 12) -> None:
    """Two classes of 40x20 images: 10 red columns on the left for `left`, on the right for `right`
    (the centre crop, columns 10-29, sees neither end; trim, columns 6-32, sees 3 or 4 of them; pad all)."""
    for label in ("left", "right"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            image = np.full((20, 40, 3), 60 + 4 * i, np.uint8)
            if label == "left":
                image[:, :10] = RED
            else:
                image[:, -10:] = RED
            Image.fromarray(image).save(root / label / f"{i}.png")
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(root / "left" / "square.png")  # one of the size


def test_data_prep_records_its_rule_and_writes_the_split_by_it(workspace):
    ws = workspace
    write_wide_folder(ws.path / "wide")
    for args, rule in ((("--resize", "pad"), "pad"), (("--resize", "crop"), "crop"), ((), "trim")):
        run = ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "wide", "--image-size", "16", "--seed", "1",
                     "--no-near-duplicates", *args)
        # the crop's cut is measured from the headers: half of each 40x20 image, none of the square one
        noted = "--resize crop cut more than a quarter off 24 of the 25 images (96%; up to 50% of one)"
        assert (noted in run.stderr) == (rule == "crop") and f"(fitted by --resize {rule})" in run.stdout
        meta = ws.versions("wide-split")[-1]["metadata"]
        assert meta["resize"] == image_files.RESIZE_RULES[rule]
        split = read_split(ws.store / "objects" / ws.versions("wide-split")[-1]["digest"])
        train = split.images["train"]
        red_kept = (train[..., 0] > 200).any(axis=(1, 2))
        if rule == "pad":  # every wide image keeps its red end, above and below a black border
            assert red_kept.sum() >= len(train) - 1 and (train[:, :3] == 0).all(axis=(1, 2, 3)).sum() >= len(train) - 1
        elif rule == "crop":  # the centre crop cuts both ends off
            assert not red_kept.any()
        else:  # trim, the default: the centre 4:3 (27 of 40 columns) keeps the inner part of the red end
            assert red_kept.sum() >= len(train) - 1 and (train[:, :2] == 0).all(axis=(1, 2, 3)).sum() >= len(train) - 1


def test_a_split_of_references_reads_its_files_by_the_rule_it_recorded(workspace):
    ws = workspace
    write_wide_folder(ws.path / "wide")
    ws.run("data_prep", "--dataset", "imagefolder", "--data-dir", "wide", "--image-size", "16", "--reference",
           "--resize", "pad", "--no-near-duplicates")
    folder = ws.store / "objects" / ws.versions("wide-split")[-1]["digest"]
    listing = json.loads((folder / "references.json").read_text())
    assert listing["resize"] == "pad"
    names = [name for name, _ in listing["splits"]["train"]]
    padded = read_split(folder).images["train"]
    assert np.array_equal(padded[0], image_files.read_image(ws.path / "wide" / names[0], 3, (16, 16), "pad"))
    # a listing written before --resize has no rule: its files are read by crop, the rule there was
    del listing["resize"]
    (folder / "references.json").write_text(json.dumps(listing))
    cropped = read_split(folder, check_sources=False).images["train"]
    assert np.array_equal(cropped[0], image_files.read_image(ws.path / "wide" / names[0], 3, (16, 16), "crop"))
    assert not np.array_equal(cropped[0], padded[0])
