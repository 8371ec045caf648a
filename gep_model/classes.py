"""Segmentation class sets with their display palettes."""

# DSEC-Semantic's 11 classes (the set GEP reports on), Cityscapes colours.
DSEC_11 = (
    ('background', (0, 0, 0)),
    ('building', (70, 70, 70)),
    ('fence', (190, 153, 153)),
    ('person', (220, 20, 60)),
    ('pole', (153, 153, 153)),
    ('road', (128, 64, 128)),
    ('sidewalk', (244, 35, 232)),
    ('vegetation', (107, 142, 35)),
    ('car', (0, 0, 142)),
    ('wall', (102, 102, 156)),
    ('traffic sign', (220, 220, 0)),
)

# DDD17's 6 classes of Ev-SegNet's labels (Alonso & Murillo 2019), as ESS and GEP use them
# (GEP's finetune_ddd17 configs: num_classes 6), with the Cityscapes colour of a member.
DDD17_6 = (
    ('flat', (128, 64, 128)),
    ('background', (70, 70, 70)),  # construction and sky
    ('object', (220, 220, 0)),
    ('vegetation', (107, 142, 35)),
    ('human', (220, 20, 60)),
    ('vehicle', (0, 0, 142)),
)


def default_classes(num_classes):
    """Return (names, palette) for `num_classes` classes: DSEC's where they fit."""
    if num_classes <= len(DSEC_11):
        chosen = DSEC_11[:num_classes]
        return [n for n, _ in chosen], [list(c) for _, c in chosen]
    names = [n for n, _ in DSEC_11] + [f'class_{i}' for i in range(len(DSEC_11), num_classes)]
    palette = [list(c) for _, c in DSEC_11]
    for i in range(len(DSEC_11), num_classes):
        # Well-spread extra colours: multiplicative hashing of the index.
        palette.append([(i * 67) % 256, (i * 151) % 256, (i * 211) % 256])
    return names, palette
