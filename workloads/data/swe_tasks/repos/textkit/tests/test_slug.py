from textkit import slugify


def test_slugify_joins_words_with_dashes():
    assert slugify("one two  three") == "one-two-three"


def test_slugify_drops_punctuation():
    assert slugify("a, b! c?") == "a-b-c"
