"""Go text/tabwriter layout, including the block rules kubectl's output depends on."""

import pytest

from meshnet.cli.tabwriter import DESCRIBE, TABLE, format_table, format_tabbed

# (description, input, settings, expected)
CASES = [
    ("one column block, last cell never padded",
     "NAME\tAGE\nweb\t5s\n", TABLE,
     "NAME   AGE\nweb    5s\n"),
    ("minwidth 6 applies to short columns",
     "A\tB\nx\ty\n", TABLE,
     "A     B\nx     y\n"),
    ("describe: labels align across consecutive tabbed lines",
     "Name:\tweb\nNamespace:\tdefault\n", DESCRIBE,
     "Name:       web\nNamespace:  default\n"),
    ("a line without a tab ends the block",
     "Name:\tweb\nPod Template:\n  Labels:\tapp=web\n", DESCRIBE,
     "Name:  web\nPod Template:\n  Labels:  app=web\n"),
    ("a leading empty cell continues the block (multi-line labels)",
     "Labels:\ta=1\n\tb=2\nType:\tClusterIP\n", DESCRIBE,
     "Labels:  a=1\n         b=2\nType:    ClusterIP\n"),
    ("ingress rules: the host line has fewer cells, so Path realigns below it",
     "  Host\tPath\tBackends\n  ----\t----\t--------\n  *\t\n    \t/ \tweb:80 (<none>)\n",
     DESCRIBE,
     "  Host  Path  Backends\n  ----  ----  --------\n  *     \n        /   web:80 (<none>)\n"),
    ("text without a trailing newline is kept",
     "a\tb", TABLE, "a     b"),
    ("empty input", "", TABLE, ""),
]


@pytest.mark.parametrize("desc,text,settings,want", CASES, ids=[c[0] for c in CASES])
def test_format_tabbed(desc, text, settings, want):
    assert format_tabbed(text, **settings) == want


def test_remembered_widths_keep_later_rows_aligned():
    widths: list[int] = []
    first = format_table([["NAME", "AGE"], ["a-long-name", "1s"]], remember=widths)
    later = format_table([["b", "2s"]], remember=widths)
    assert first == "NAME          AGE\na-long-name   1s\n"
    assert later == "b             2s\n"


def test_cells_with_newlines_are_truncated_like_kubectl():
    assert format_table([["NAME", "NOTE"], ["x", "line1\nline2"]]) == \
        "NAME   NOTE\nx      line1...\n"
