"""The architecture parsers are strict: one row per malformed class, each a named error.

Genotype text and values (``Genotype.parse``, ``Genotype(...)``), genotype paths
(``load_genotype``), published names (``get_genotype``), NAS-Bench-201 and NAS-RL strings,
the DARTS space's ``parse`` and architecture vectors (``DecisionSpec.validate``). Every row
names the class it expects and a piece of the message; every class is a ``JnasError`` (the
entry points' boundary prints it without a traceback).
"""

import os
import stat
import threading

import numpy as np
import pytest

from jnas.errors import JnasError
from jnas.ops.primitives import UnknownOpError
from jnas.spaces import nb201
from jnas.spaces.cells import check_genotype
from jnas.spaces.darts import DartsSpace
from jnas.spaces.discrete import (
    ArchitectureError,
    ArchitectureRangeError,
    ArchitectureSyntaxError,
    ArchitectureTypeError,
    NonAsciiTextError,
    UnknownChoiceError,
)
from jnas.spaces.genotype import (
    MAX_FILE_BYTES,
    BinaryGenotypeFileError,
    Genotype,
    GenotypeFileError,
    GenotypeFileTooLargeError,
    GenotypeRangeError,
    GenotypeSyntaxError,
    GenotypeTypeError,
    MalformedGenotypeError,
    NonAsciiGenotypeError,
    NotARegularFileError,
    UnknownGenotypeError,
    UnknownGenotypeOpError,
    load_genotype,
)
from jnas.spaces.nasrl import NasRLSpace
from jnas.spaces.published import PUBLISHED, canonical_name, get_genotype
from jnas.spaces.text import MAX_TEXT_CHARS, echo

V2 = PUBLISHED["DARTS_V2"]
TEXT = str(V2)  # Genotype(normal=[('sep_conv_3x3', 0), ..., ('dil_conv_3x3', 2)], ...)
FIRST = "('sep_conv_3x3', 0)"  # the first edge of the normal cell
LAST = "('dil_conv_3x3', 2)"  # the last edge of the normal cell
CONCAT = "normal_concat=[2, 3, 4, 5]"


def edit(old, new):
    assert old in TEXT
    return TEXT.replace(old, new, 1)


GENOTYPE_ROWS = [
    # An index is an int literal in decimal digits, nothing int() would also take.
    ("float index", edit(FIRST, "('sep_conv_3x3', 1.5)"), GenotypeTypeError, "a float"),
    ("integral float", edit(FIRST, "('sep_conv_3x3', 0.0)"), GenotypeTypeError, "a float"),
    ("bool index", edit(FIRST, "('sep_conv_3x3', True)"), GenotypeTypeError, "a bool"),
    ("str index", edit(FIRST, "('sep_conv_3x3', '0')"), GenotypeTypeError, "a str"),
    ("name index", edit(FIRST, "('sep_conv_3x3', zero)"), GenotypeTypeError, "int literal"),
    ("expression", edit(FIRST, "('sep_conv_3x3', 1 - 1)"), GenotypeTypeError, "int literal"),
    ("hex index", edit(FIRST, "('sep_conv_3x3', 0x0)"), GenotypeSyntaxError, "decimal"),
    ("underscore", edit(LAST, "('dil_conv_3x3', 0_2)"), GenotypeSyntaxError, "decimal"),
    ("leading zeros", edit(FIRST, "('sep_conv_3x3', 00)"), GenotypeSyntaxError, "leading"),
    ("leading zero 01", edit(LAST, "('dil_conv_3x3', 02)"), GenotypeSyntaxError, "syntax"),
    (
        "overlong number",
        edit(FIRST, "('sep_conv_3x3', " + "9" * 30 + ")"),
        GenotypeRangeError,
        "9 digits",
    ),
    (
        "5000 digits",
        edit(FIRST, "('sep_conv_3x3', " + "9" * 5000 + ")"),
        GenotypeSyntaxError,
        "syntax",
    ),
    ("negative index", edit(FIRST, "('sep_conv_3x3', -1)"), GenotypeRangeError, "index -1"),
    ("double minus", edit(FIRST, "('sep_conv_3x3', --1)"), GenotypeTypeError, "int literal"),
    ("forward index", edit(FIRST, "('sep_conv_3x3', 2)"), GenotypeRangeError, "node 0 .*index 2"),
    # A concat is a list (or tuple, or range) of such ints.
    ("concat string", edit(CONCAT, "normal_concat='2345'"), GenotypeTypeError, "is a string"),
    ("concat dict", edit(CONCAT, "normal_concat={2: 3}"), GenotypeTypeError, "list of ints"),
    (
        "concat set",
        edit(CONCAT, "normal_concat={2, 3, 4, 5}"),
        GenotypeTypeError,
        "set has no order",
    ),
    ("concat int", edit(CONCAT, "normal_concat=2"), GenotypeTypeError, "list of ints"),
    ("concat floats", edit(CONCAT, "normal_concat=[2.0, 3, 4, 5]"), GenotypeTypeError, "a float"),
    ("concat bools", edit(CONCAT, "normal_concat=[True, 2]"), GenotypeTypeError, "a bool"),
    (
        "concat twice",
        edit(CONCAT, "normal_concat=[2, 3, 3, 4, 5]"),
        GenotypeRangeError,
        "more than once",
    ),
    ("concat out of range", edit(CONCAT, "normal_concat=[2, 9]"), GenotypeRangeError, r"\[0, 5\]"),
    ("concat empty", edit(CONCAT, "normal_concat=[]"), GenotypeRangeError, "must list"),
    ("range step 0", edit(CONCAT, "normal_concat=range(2, 6, 0)"), GenotypeRangeError, "step 0"),
    ("range str", edit(CONCAT, "normal_concat=range('2')"), GenotypeTypeError, "a str"),
    ("range keyword", edit(CONCAT, "normal_concat=range(stop=6)"), GenotypeTypeError, "1 to 3"),
    (
        "huge range",
        edit(CONCAT, "normal_concat=range(999999999)"),
        GenotypeRangeError,
        "more than any cell",
    ),
    (
        "list(range)",
        edit(CONCAT, "normal_concat=list(range(2, 6))"),
        GenotypeTypeError,
        "list of ints",
    ),
    # Edges are an ordered list of (op, index) pairs.
    (
        "edges set",
        TEXT.replace("normal=[", "normal={", 1).replace(LAST + "]", LAST + "}", 1),
        GenotypeTypeError,
        "hash order",
    ),
    (
        "edges dict",
        edit("normal=[", "normal={'a': 1}, x=["),
        GenotypeSyntaxError,
        "unknown genotype field",
    ),
    (
        "edges string",
        edit("normal=[", "normal='sep_conv_3x3', x=["),
        GenotypeSyntaxError,
        "unknown",
    ),
    ("edge of three", edit(FIRST, "('sep_conv_3x3', 0, 1)"), GenotypeTypeError, "pair"),
    ("op unquoted", edit(FIRST, "(sep_conv_3x3, 0)"), GenotypeTypeError, "quoted name"),
    ("op bytes", edit(FIRST, "(b'sep_conv_3x3', 0)"), GenotypeTypeError, "quoted name"),
    ("op escape", edit(FIRST, r"('sep\x5fconv_3x3', 0)"), GenotypeSyntaxError, "plain quoted"),
    ("op joined", edit(FIRST, "('sep_' 'conv_3x3', 0)"), GenotypeSyntaxError, "plain quoted"),
    ("op prefix", edit(FIRST, "(u'sep_conv_3x3', 0)"), GenotypeSyntaxError, "plain quoted"),
    ("op triple-quoted", edit(FIRST, "('''sep_conv_3x3''', 0)"), GenotypeSyntaxError, "plain"),
    ("odd edges", edit(FIRST + ", ", ""), GenotypeRangeError, "two edges per node"),
    (
        "no edges",
        TEXT.replace(
            TEXT[TEXT.index("normal=[") : TEXT.index("], normal_concat") + 1], "normal=[]"
        ),
        GenotypeRangeError,
        "got 0 edges",
    ),
    (
        "unknown op",
        edit("dil_conv_3x3", "conv_9x9"),
        UnknownGenotypeOpError,
        "unknown op 'conv_9x9'",
    ),
    # Each field once; nothing before or after the call.
    ("keyword twice", TEXT[:-1] + ", normal_concat=[2, 3])", GenotypeSyntaxError, "given twice"),
    (
        "positional and keyword",
        "Genotype([('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], " + TEXT[9:],
        GenotypeSyntaxError,
        "given twice",
    ),
    ("too many positionals", "Genotype(1, 2, 3, 4, 5)", GenotypeSyntaxError, "positional"),
    (
        "missing field",
        TEXT.replace(", reduce_concat=[2, 3, 4, 5]", ""),
        GenotypeSyntaxError,
        "missing",
    ),
    (
        "misspelt field",
        TEXT.replace("reduce_concat", "reduce_concats"),
        GenotypeSyntaxError,
        "did you mean 'reduce_concat'",
    ),
    ("**kwargs", TEXT[:-1] + ", **extra)", GenotypeSyntaxError, r"\*\*kwargs"),
    ("*args", "Genotype(*cells)", GenotypeSyntaxError, r"\*args"),
    ("trailing garbage", TEXT + " x", GenotypeSyntaxError, "syntax"),
    ("trailing statement", TEXT + "\nimport os", GenotypeSyntaxError, "syntax"),
    ("two genotypes", TEXT + ", " + TEXT, GenotypeSyntaxError, "must look like"),
    ("another call", TEXT.replace("Genotype(", "Cell(", 1), GenotypeSyntaxError, "must look like"),
    ("attribute call", "genotypes." + TEXT, GenotypeSyntaxError, "must look like"),
    ("unbalanced", TEXT[:-1], GenotypeSyntaxError, "syntax"),
    ("NUL character", edit("normal=", "normal=\x00"), GenotypeSyntaxError, "syntax"),
    ("deep nesting", "Genotype(normal=" + "-" * 100_000 + "1)", GenotypeSyntaxError, "nested"),
    (
        "deep brackets",
        "Genotype(normal=" + "[" * 300 + "]" * 300 + ")",
        GenotypeSyntaxError,
        "syntax",
    ),
    ("empty", "", GenotypeSyntaxError, "empty"),
    ("white space", " \t\n ", GenotypeSyntaxError, "empty"),
    ("absurdly long", TEXT + " " * MAX_TEXT_CHARS, GenotypeSyntaxError, "longer than any"),
    # ASCII only: Unicode digits, and letters that NFKC would turn into ASCII ones.
    (
        "Arabic-Indic digit",
        edit(LAST, "('dil_conv_3x3', \u0663)"),
        NonAsciiGenotypeError,
        "Unicode digit",
    ),
    ("fullwidth digit", edit(LAST, "('dil_conv_3x3', \uff12)"), NonAsciiGenotypeError, "U\\+FF12"),
    ("fullwidth letter", "\uff27" + TEXT[1:], NonAsciiGenotypeError, "character 0"),
    (
        "Unicode in op",
        edit("dil_conv_3x3", "dil_conv_\u0663x3"),
        NonAsciiGenotypeError,
        "Unicode digit",
    ),
    ("non-ASCII space", TEXT + "\u2003", NonAsciiGenotypeError, "non-ASCII"),
    # Not text at all.
    ("None", None, GenotypeTypeError, "NoneType"),
    ("bytes", TEXT.encode(), GenotypeTypeError, "bytes"),
    ("a Genotype", V2, GenotypeTypeError, "Genotype"),
]


@pytest.mark.parametrize(
    "text, cls, match", [r[1:] for r in GENOTYPE_ROWS], ids=[r[0] for r in GENOTYPE_ROWS]
)
def test_genotype_text_rows(text, cls, match):
    with pytest.raises(cls, match=match) as info:
        Genotype.parse(text)
    assert isinstance(info.value, MalformedGenotypeError | JnasError)
    assert len(str(info.value)) < 2_000  # the input echoed cut, never the megabyte


def test_every_genotype_row_is_rejected_by_the_darts_space_and_by_load_genotype():
    space = DartsSpace()
    for _, text, cls, _ in GENOTYPE_ROWS:
        with pytest.raises(cls):
            space.parse(text)
        if isinstance(text, str) and text.strip().startswith("Genotype("):
            with pytest.raises(cls):
                load_genotype(text)


def test_valid_spellings_still_parse():
    g = Genotype.parse(TEXT)
    assert g == V2
    # range(...) as the DARTS code writes it, tuples, a trailing comma, lines and comments.
    assert (
        Genotype.parse(TEXT.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")) == g
    )
    assert Genotype.parse(TEXT.replace("[2, 3, 4, 5]", "(2, 3, 4, 5)")) == g
    assert Genotype.parse(TEXT.replace("('sep_conv_3x3', 0)", "['sep_conv_3x3', 0]")) == g
    assert Genotype.parse(TEXT[:-1] + ",\n)  # DARTS_V2\n") == g
    assert Genotype.parse("\n  " + TEXT.replace(", reduce=", ",\n    reduce=") + "\n") == g
    positional = (
        "Genotype("
        + ", ".join(
            TEXT[TEXT.index(f"{f}=") + len(f) + 1 : end]
            for f, end in [
                ("normal", TEXT.index(", normal_concat")),
                ("normal_concat", TEXT.index(", reduce=")),
                ("reduce", TEXT.index(", reduce_concat")),
                ("reduce_concat", len(TEXT) - 1),
            ]
        )
        + ")"
    )
    assert Genotype.parse(positional) == g


VALUE_ROWS = [
    ("float index", dict(normal=[("sep_conv_3x3", 1.5)] * 2), GenotypeTypeError, "float"),
    ("integral float", dict(normal=[("sep_conv_3x3", 1.0)] * 2), GenotypeTypeError, "float"),
    ("numpy float", dict(normal=[("sep_conv_3x3", np.float64(1))] * 2), GenotypeTypeError, "float"),
    ("bool index", dict(normal=[("sep_conv_3x3", True)] * 2), GenotypeTypeError, "bool"),
    ("str index", dict(normal=[("sep_conv_3x3", "1")] * 2), GenotypeTypeError, "str"),
    ("op not str", dict(normal=[(3, 1)] * 2), GenotypeTypeError, "op must be a str"),
    (
        "edges set",
        dict(normal={("sep_conv_3x3", 0), ("sep_conv_3x3", 1)}),
        GenotypeTypeError,
        "hash order",
    ),
    ("edges str", dict(normal="sep_conv_3x3"), GenotypeTypeError, "list of"),
    ("edge triple", dict(normal=[("sep_conv_3x3", 0, 1)] * 2), GenotypeTypeError, "pair"),
    ("concat str", dict(normal_concat="2345"), GenotypeTypeError, "is a string"),
    ("concat dict", dict(normal_concat={2: 1, 3: 1}), GenotypeTypeError, "list of ints"),
    ("concat set", dict(normal_concat={2, 3}), GenotypeTypeError, "no order"),
    ("concat floats", dict(normal_concat=[2.0, 3.0]), GenotypeTypeError, "float"),
    ("concat array", dict(normal_concat=np.arange(2, 6)), GenotypeTypeError, "ndarray"),
]


@pytest.mark.parametrize(
    "fields, cls, match", [r[1:] for r in VALUE_ROWS], ids=[r[0] for r in VALUE_ROWS]
)
def test_genotype_value_rows(fields, cls, match):
    with pytest.raises(cls, match=match):
        Genotype(**{**V2.to_dict(), **fields})


def test_genotype_values_that_are_fine():
    # numpy integers (entries of an architecture vector) and a range are ints and a list.
    g = Genotype(
        normal=[(op, np.int64(i)) for op, i in V2.normal],
        normal_concat=range(2, 6),
        reduce=[list(e) for e in V2.reduce],
        reduce_concat=np.arange(2, 6).tolist(),
    )
    assert g == V2 and all(type(i) is int for _, i in g.normal)
    with pytest.raises(GenotypeTypeError, match="expected a Genotype"):
        check_genotype(V2.to_dict())
    with pytest.raises(GenotypeRangeError, match="reduce_concat"):
        check_genotype(Genotype(V2.normal, V2.normal_concat, V2.reduce, (0, 2, 3, 4, 5)))


# -- genotype paths -----------------------------------------------------------------------


def call_with_timeout(fn, *args, seconds=10):
    """``fn(*args)``'s exception (or None), failing if it does not return in ``seconds``."""
    out = {}

    def target():
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__}{args} hung"
    return out.get("error")


def test_genotype_path_rows(tmp_path):
    good = tmp_path / "genotype.txt"
    good.write_text(TEXT + "\n")
    assert load_genotype(str(good)) == V2 and load_genotype(good) == V2  # str or PathLike
    assert get_genotype(str(good)) == V2

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    binary = tmp_path / "binary.txt"
    binary.write_bytes(TEXT.encode()[:40] + b"\x00" + TEXT.encode()[40:])
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(TEXT.encode().replace(b"normal=", b"normal\xe9=", 1))
    large = tmp_path / "large.txt"
    with open(large, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing written
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    malformed = tmp_path / "malformed.txt"
    malformed.write_text(TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', True)"))
    unicode_digit = tmp_path / "unicode.txt"
    unicode_digit.write_text(TEXT.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', \u0662)"))
    rows = [
        (tmp_path, NotARegularFileError, "is a directory"),
        (fifo, NotARegularFileError, "is a FIFO"),
        (binary, BinaryGenotypeFileError, "NUL bytes"),
        (latin1, BinaryGenotypeFileError, "not UTF-8"),
        (large, GenotypeFileTooLargeError, f"{MAX_FILE_BYTES + 1} bytes"),
        (empty, GenotypeSyntaxError, "genotype file .*empty"),
        (malformed, GenotypeTypeError, "genotype file .*malformed.txt.*a bool"),
        (unicode_digit, NonAsciiGenotypeError, "genotype file .*U\\+0662"),
        (tmp_path / "missing.txt", UnknownGenotypeError, "neither a known genotype name"),
        (str(tmp_path / "a\x00b"), GenotypeSyntaxError, "NUL character"),
    ]
    loop = tmp_path / "loop"
    os.symlink(loop, loop)  # a symlink to itself: ELOOP
    rows.append((loop, GenotypeFileError, "cannot read genotype file .*symbolic links"))
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.txt"
        locked.write_text(TEXT)
        locked.chmod(0)
        rows.append((locked, GenotypeFileError, "cannot open genotype file .*ermission"))
    if os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode):
        rows.append(("/dev/null", NotARegularFileError, "character device"))
    if os.path.exists("/dev/zero"):
        rows.append(("/dev/zero", NotARegularFileError, "character device"))
    for path, cls, match in rows:
        for fn in (load_genotype, get_genotype):
            error = call_with_timeout(fn, str(path))
            assert isinstance(error, cls), (path, error)
            assert isinstance(error, MalformedGenotypeError | JnasError)
            with pytest.raises(cls, match=match):
                raise error


def test_load_genotype_spec_rows():
    rows = [
        (None, GenotypeTypeError, "NoneType"),
        (7, GenotypeTypeError, "int"),
        ("", GenotypeSyntaxError, "empty"),
        (" \n", GenotypeSyntaxError, "empty"),
        ("x" * (MAX_TEXT_CHARS + 1), GenotypeSyntaxError, "longer than any"),
        ("DARTS_V3", UnknownGenotypeError, "did you mean 'DARTS_V2'"),
    ]
    for spec, cls, match in rows:
        with pytest.raises(cls, match=match):
            load_genotype(spec, PUBLISHED)
        with pytest.raises(cls, match=match):
            get_genotype(spec)


@pytest.mark.parametrize(
    "spelling",
    [
        "\uff24\uff21\uff32\uff34\uff33",  # fullwidth DARTS
        "DARTS\u0662",  # with an Arabic-Indic 2
        "D.A.R.T.S",
        "darts!",
        "PC/DARTS",
        "\u212aDARTS",  # the Kelvin sign lower-cases to an ASCII k
    ],
)
def test_published_names_are_ascii_spellings_only(spelling):
    assert canonical_name(spelling) is None
    with pytest.raises(UnknownGenotypeError, match="neither a known genotype name"):
        get_genotype(spelling)


def test_published_names_in_their_spellings():
    assert canonical_name("pc-darts") == canonical_name(" PC DARTS ") == "PC_DARTS"
    assert canonical_name(None) is None and canonical_name(3) is None
    assert get_genotype("  DARTS-V2\n") is V2


def test_a_megabyte_of_input_is_echoed_cut():
    big = "Genotype(" + "x" * MAX_TEXT_CHARS
    for fn in (Genotype.parse, load_genotype, nb201.parse, NasRLSpace().parse):
        with pytest.raises(ArchitectureError) as info:
            fn(big)
        assert len(str(info.value)) < 600, fn
    assert echo("ab") == "'ab'"
    assert echo("a" * 1000, 10) == "'aaaaaaaaaa'... (1000 characters)"


# -- NAS-Bench-201 and NAS-RL strings ------------------------------------------------------

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

NB201_ROWS = [
    ("Arabic-Indic digit", RESNET.replace("~1", "~\u0661", 1), NonAsciiTextError, "Unicode digit"),
    ("fullwidth digit", RESNET.replace("~0", "~\uff10", 1), NonAsciiTextError, "U\\+FF10"),
    ("superscript digit", RESNET.replace("~2", "~\u00b2"), NonAsciiTextError, "U\\+00B2"),
    ("leading zero", RESNET.replace("~2", "~02"), ArchitectureSyntaxError, "leading zeros"),
    ("sign", RESNET.replace("~1", "~-1", 1), ArchitectureSyntaxError, "without sign"),
    ("no source", RESNET.replace("~1", "~", 1), ArchitectureSyntaxError, "ASCII decimal"),
    ("overlong source", RESNET.replace("~2", "~" + "1" * 40), ArchitectureRangeError, "9 digits"),
    ("trailing garbage", RESNET + "x", ArchitectureSyntaxError, "not of the form"),
    ("trailing node", RESNET + "+", ArchitectureSyntaxError, "4 '\\+'-separated"),
    ("leading garbage", "x" + RESNET, ArchitectureSyntaxError, "not of the form"),
    ("inner space", RESNET.replace("|none~0|", "| none~0|"), UnknownChoiceError, "' none'"),
    ("unknown op", RESNET.replace("none~0", "conv_9x9~0"), UnknownChoiceError, "conv_9x9"),
    ("source twice", RESNET.replace("none~1|skip", "none~0|skip"), ArchitectureRangeError, "once"),
    ("source out of range", RESNET.replace("~2", "~3"), ArchitectureRangeError, "node 3"),
    ("edge missing", RESNET.replace("|none~1", ""), ArchitectureRangeError, "node 3"),
    ("no tilde", RESNET.replace("none~0", "none0"), ArchitectureSyntaxError, "op~j"),
    ("empty", "", ArchitectureSyntaxError, "empty"),
    (
        "absurdly long",
        RESNET * (MAX_TEXT_CHARS // len(RESNET) + 1),
        ArchitectureSyntaxError,
        "longer than any",
    ),
    ("not a str", 303101, ArchitectureTypeError, "int"),
    ("a vector", np.zeros(6, int), ArchitectureTypeError, "ndarray"),
]


@pytest.mark.parametrize(
    "text, cls, match", [r[1:] for r in NB201_ROWS], ids=[r[0] for r in NB201_ROWS]
)
def test_nb201_rows(text, cls, match):
    with pytest.raises(cls, match=match):
        nb201.parse(text)


def test_nb201_op_codes_are_ascii():
    assert nb201.from_op_code("303101").tolist() == [3, 0, 3, 1, 0, 1]
    for code in ("\u0663\u0660\u0663\u0661\u0660\u0661", "30310\u00b2", "30310", 303101):
        with pytest.raises(ArchitectureSyntaxError, match="ASCII digits"):
            nb201.from_op_code(code)


NASRL = "3x3/s1/f36; 5x7/s1/f48<-0; 1x3/s1/f24<-0,1"

NASRL_ROWS = [
    ("Arabic-Indic digit", NASRL.replace("3x3", "3x\u0663"), NonAsciiTextError, "Unicode digit"),
    ("fullwidth digit", NASRL.replace("f36", "f\uff13\uff16"), NonAsciiTextError, "U\\+FF13"),
    ("leading zero", NASRL.replace("f36", "f036"), ArchitectureSyntaxError, "leading zeros"),
    ("input leading zero", NASRL.replace("<-0,1", "<-00,1"), ArchitectureSyntaxError, "leading"),
    ("overlong number", NASRL.replace("f36", "f" + "3" * 50), ArchitectureRangeError, "9 digits"),
    ("trailing separator", NASRL + ";", ArchitectureSyntaxError, "layer 3 ''"),
    ("trailing garbage", NASRL + " x", ArchitectureSyntaxError, "layer 2"),
    ("input twice", NASRL.replace("<-0,1", "<-1,1"), ArchitectureRangeError, "distinct"),
    ("forward input", NASRL.replace("<-0,1", "<-0,2"), ArchitectureRangeError, "j < 2"),
    ("filter not a choice", NASRL.replace("5x7", "5x6"), UnknownChoiceError, "filter_width = 6"),
    ("stride not 1", NASRL.replace("s1/f48", "s2/f48"), ArchitectureRangeError, "stride 2"),
    ("too few layers", "3x3/s1/f36", ArchitectureRangeError, "1 layers"),
    ("empty", " ", ArchitectureSyntaxError, "empty"),
    ("not a str", ["3x3/s1/f36"], ArchitectureTypeError, "list"),
]


@pytest.mark.parametrize(
    "text, cls, match", [r[1:] for r in NASRL_ROWS], ids=[r[0] for r in NASRL_ROWS]
)
def test_nasrl_rows(text, cls, match):
    space = NasRLSpace(num_layers=3)
    assert space.to_text(space.parse(NASRL)) == NASRL
    with pytest.raises(cls, match=match):
        space.parse(text)


def test_nasrl_inputs_are_a_set_in_any_order():
    space = NasRLSpace(num_layers=3)
    swapped = NASRL.replace("<-0,1", "<-1,0")
    np.testing.assert_array_equal(space.parse(swapped), space.parse(NASRL))


@pytest.mark.parametrize(
    "arch, cls",
    [
        ([3.0, 0, 3, 1, 0, 1], ArchitectureTypeError),
        ([True, False, True, True, False, True], ArchitectureTypeError),
        (["3", "0", "3", "1", "0", "1"], ArchitectureTypeError),
        ([[3, 0], [3]], ArchitectureTypeError),
        ([3, 0, 3], ArchitectureRangeError),
        ([], ArchitectureRangeError),
        ([3, 0, 3, 1, 0, 5], ArchitectureRangeError),
        ([3, 0, 3, 1, 0, -1], ArchitectureRangeError),
    ],
)
def test_architecture_vectors_are_int_vectors(arch, cls):
    with pytest.raises(cls):
        nb201.SPEC.validate(arch)
    assert nb201.SPEC.validate(np.asarray([3, 0, 3, 1, 0, 1], np.int64)).dtype == np.int32


def test_every_new_error_is_a_named_jnas_error():
    from jnas.spaces import genotype

    classes = [
        ArchitectureSyntaxError,
        NonAsciiTextError,
        ArchitectureTypeError,
        ArchitectureRangeError,
        UnknownChoiceError,
    ] + [
        v
        for v in vars(genotype).values()
        if isinstance(v, type) and issubclass(v, Exception) and v.__module__ == genotype.__name__
    ]
    assert len(classes) > 14
    for cls in classes:
        assert issubclass(cls, ArchitectureError) and issubclass(cls, JnasError), cls
        assert issubclass(cls, ValueError), cls  # `except ValueError` callers keep working
    assert issubclass(UnknownGenotypeOpError, UnknownOpError)
    assert issubclass(NonAsciiGenotypeError, NonAsciiTextError)
