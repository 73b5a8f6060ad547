"""Generate realistic, varied CBC ORU^R01 messages for benchmarks.

Every message carries 19 OBX: WBC, RBC, Hgb, Hct, MCV, MCH, MCHC, RDW, platelets, the five
differential percents and the five absolute counts, with LOINC codes, the sender's units,
OBX-7 reference ranges that match those units and OBX-8 flags that agree with the ranges.
Values are plausible and about a third of the messages are leukopenic (some of them
severely), a few have leukocytosis.  Count units are drawn from every spelling that the
rule set accepts (``K/uL``, ``x10E3/uL``, ``/uL`` with values like 4300, ``G/L``, ``K/µL``
...), so unit normalisation is exercised too.  Sender style (HL7 version 2.3 to 2.5.1,
coded or plain units, flag conventions) varies per message.

The output depends only on ``--count`` and ``--seed``: the same arguments give byte-identical
files (no clock, no global random state).

    python benchmarks/generate.py --count 1000 --seed 1 --out DIR            # one file, N messages
    python benchmarks/generate.py --count 1000 --seed 1 --out DIR --per-file 50

From Python::

    from generate import generate_messages      # with benchmarks/ on sys.path
    messages = generate_messages(100, seed=1)   # list of bytes, one message each, \\r segment ends
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

SEGMENT_END = "\r"

# (LOINC, long common name, short name used by plain-text senders)
WBC = ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "WBC")
RBC = ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "RBC")
HGB = ("718-7", "Hemoglobin [Mass/volume] in Blood", "HGB")
HCT = ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "HCT")
MCV = ("787-2", "MCV [Entitic volume] by Automated count", "MCV")
MCH = ("785-6", "MCH [Entitic mass] by Automated count", "MCH")
MCHC = ("786-4", "MCHC [Mass/volume] by Automated count", "MCHC")
RDW = ("788-0", "Erythrocyte distribution width [Ratio] by Automated count", "RDW")
PLT = ("777-3", "Platelets [#/volume] in Blood by Automated count", "PLT")
DIFF_PERCENT = {
    "neut": ("770-8", "Neutrophils/100 leukocytes in Blood by Automated count", "NEUT %"),
    "lymph": ("736-9", "Lymphocytes/100 leukocytes in Blood by Automated count", "LYMPH %"),
    "mono": ("5905-5", "Monocytes/100 leukocytes in Blood by Automated count", "MONO %"),
    "eos": ("713-8", "Eosinophils/100 leukocytes in Blood by Automated count", "EOS %"),
    "baso": ("706-2", "Basophils/100 leukocytes in Blood by Automated count", "BASO %"),
}
DIFF_COUNT = {
    "neut": ("751-8", "Neutrophils [#/volume] in Blood by Automated count", "NEUT ABS"),
    "lymph": ("731-0", "Lymphocytes [#/volume] in Blood by Automated count", "LYMPH ABS"),
    "mono": ("742-7", "Monocytes [#/volume] in Blood by Automated count", "MONO ABS"),
    "eos": ("711-2", "Eosinophils [#/volume] in Blood by Automated count", "EOS ABS"),
    "baso": ("704-7", "Basophils [#/volume] in Blood by Automated count", "BASO ABS"),
}
CELLS = ("neut", "lymph", "mono", "eos", "baso")

# Accepted count-unit spellings (RULES.md section 1) and their factor to 10^9/L.
# ``^`` inside a unit is the component separator in ER7 and is sent escaped as ``\S\``.
UNITS_THOUSAND_PER_UL = (
    "10*3/uL",
    "10^3/uL",
    "x10E3/uL",
    "K/uL",
    "K/µL",
    "THOU/uL",
    "10*3/mm3",
)
UNITS_PER_LITRE = ("10*9/L", "10^9/L", "x10^9/L", "G/L")
UNITS_PER_UL = ("/uL", "/mm3", "cells/uL", "cells/mm3", "/cmm", "/cumm", "{cells}/uL")
ALL_COUNT_UNITS = UNITS_THOUSAND_PER_UL + UNITS_PER_LITRE + UNITS_PER_UL
# spellings that are valid UCUM (a coding sender marks the others as local, "L")
UCUM_UNITS = frozenset(
    (
        "10*3/uL",
        "10*3/mm3",
        "10*9/L",
        "/uL",
        "/mm3",
        "{cells}/uL",
        "10*6/uL",
        "10*12/L",
        "%",
        "g/dL",
        "g/L",
        "fL",
        "pg",
    )
)

# Reference intervals in 10^9/L (counts), % and the red-cell units.
COUNT_RANGES = {
    "wbc": ("4.3", "10.8"),
    "neut": ("1.8", "7.7"),
    "lymph": ("1.0", "4.8"),
    "mono": ("0.2", "0.95"),
    "eos": ("0.0", "0.5"),
    "baso": ("0.0", "0.2"),
    "plt": ("150", "400"),
}
PERCENT_RANGES = {
    "neut": ("40.0", "74.0"),
    "lymph": ("19.0", "48.0"),
    "mono": ("3.4", "9.0"),
    "eos": ("0.0", "7.0"),
    "baso": ("0.0", "1.5"),
}
RED_RANGES = {
    "F": {"rbc": ("3.90", "5.10"), "hgb": ("12.0", "15.5"), "hct": ("36.0", "46.0")},
    "M": {"rbc": ("4.50", "5.90"), "hgb": ("13.5", "17.5"), "hct": ("41.0", "53.0")},
    "U": {"rbc": ("3.90", "5.90"), "hgb": ("12.0", "17.5"), "hct": ("36.0", "53.0")},
}

FAMILY = (
    "Abbott",
    "Alvarez",
    "Baptiste",
    "Bergstrom",
    "Castillo",
    "Chen",
    "Dubois",
    "Eriksen",
    "Fitzgerald",
    "Gallagher",
    "Haddad",
    "Hoffmann",
    "Ibrahim",
    "Jankowski",
    "Kaur",
    "Kowalski",
    "Lindqvist",
    "Mbeki",
    "Moreau",
    "Nakamura",
    "Novak",
    "O'Neill",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rasmussen",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Tanaka",
    "Thompson",
    "Urquhart",
    "Varga",
    "Walsh",
    "Yilmaz",
    "Zhou",
    "Zielinski",
)
GIVEN_F = (
    "Amara",
    "Beatriz",
    "Chloe",
    "Dana",
    "Elif",
    "Freya",
    "Grace",
    "Hana",
    "Ines",
    "Joanna",
    "Keiko",
    "Leila",
    "Maria",
    "Nadia",
    "Olga",
    "Priya",
    "Rosa",
    "Sofia",
)
GIVEN_M = (
    "Adam",
    "Bruno",
    "Carlos",
    "Daniel",
    "Emeka",
    "Farid",
    "Gustav",
    "Henrik",
    "Ivan",
    "Jamal",
    "Kenji",
    "Luca",
    "Marek",
    "Nikhil",
    "Omar",
    "Pavel",
    "Rafael",
    "Tomas",
)


@dataclass(frozen=True)
class Sender:
    app: str
    facility: str
    version: str
    coded_units: bool  # CWE with UCUM triplet vs. plain text
    long_names: bool
    normal_flag: str  # "N" or ""
    offset: str
    mrn_authority: str


SENDERS = (
    Sender(
        "HEMALIS^2.16.840.1.113883.19.4.1^ISO",
        "RIVERBEND RMC LAB^05D0987712^CLIA",
        "2.5.1",
        True,
        True,
        "N",
        "-0500",
        "RBRMC",
    ),
    Sender("LABSYS", "LAKESHORE CH", "2.3", False, False, "", "-0600", "LCH"),
    Sender(
        "CVCL_LIS",
        "CEDAR VALLEY CLIN LABS^46D2251873^CLIA",
        "2.4",
        False,
        False,
        "",
        "-0700",
        "CVCL",
    ),
    Sender("LABNORD", "FJORDVIK SJUKEHUS^FVS^L", "2.5", True, True, "N", "+0100", "FVS"),
)

EPOCH = datetime(2025, 1, 6, 0, 0, 0)
TWO_PLACES = Decimal("0.01")
ONE_PLACE = Decimal("0.1")


def _q(value: float | Decimal, places: Decimal) -> Decimal:
    return Decimal(str(value)).quantize(places, rounding=ROUND_HALF_UP)


def _escape(text: str) -> str:
    """ER7-escape text for the default encoding characters ``|^~\\&``."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("~", "\\R\\")
        .replace("&", "\\T\\")
    )


def _ts(moment: datetime, offset: str) -> str:
    return moment.strftime("%Y%m%d%H%M%S") + offset


def _flag(value: Decimal, low: Decimal, high: Decimal, normal: str) -> str:
    if value < low:
        return "L"
    if value > high:
        return "H"
    return normal


def _pick_wbc(rng: random.Random) -> Decimal:
    roll = rng.random()
    if roll < 0.58:  # normal
        return _q(rng.uniform(4.3, 10.8), TWO_PLACES)
    if roll < 0.78:  # mild leukopenia (grade 1)
        return _q(rng.uniform(3.0, 4.29), TWO_PLACES)
    if roll < 0.86:  # grade 2
        return _q(rng.uniform(2.0, 2.99), TWO_PLACES)
    if roll < 0.91:  # grade 3
        return _q(rng.uniform(1.0, 1.99), TWO_PLACES)
    if roll < 0.94:  # grade 4
        return _q(rng.uniform(0.3, 0.99), TWO_PLACES)
    return _q(rng.uniform(10.9, 28.0), TWO_PLACES)  # leukocytosis


def _pick_percents(rng: random.Random, wbc: Decimal) -> dict[str, Decimal]:
    """Five percents summing to exactly 100.0, shifted towards neutropenia when WBC is low."""
    neut_mean = 58.0 if wbc >= Decimal("4.3") else 42.0
    if wbc > Decimal("10.8"):
        neut_mean = 78.0
    weights = {
        "neut": max(rng.gauss(neut_mean, 9.0), 5.0),
        "lymph": max(rng.gauss(30.0, 7.0), 4.0),
        "mono": max(rng.gauss(7.0, 2.2), 0.5),
        "eos": max(rng.gauss(2.5, 1.8), 0.0),
        "baso": max(rng.gauss(0.7, 0.4), 0.0),
    }
    total = sum(weights.values())
    percents = {cell: _q(100.0 * w / total, ONE_PLACE) for cell, w in weights.items()}
    percents["neut"] += Decimal("100.0") - sum(percents.values())  # absorb rounding
    return percents


def _segment(name: str, fields: dict[int, str]) -> str:
    """One ER7 segment with ``fields`` at their HL7 positions (for MSH, position 3 on)."""
    last = max(fields)
    first = 3 if name == "MSH" else 1
    values = [fields.get(i, "") for i in range(first, last + 1)]
    return "|".join(["MSH", "^~\\&", *values] if name == "MSH" else [name, *values])


def _count_text(value_e9: Decimal, unit: str) -> str:
    if unit in UNITS_PER_UL:
        return str(int((value_e9 * 1000).to_integral_value(rounding=ROUND_HALF_UP)))
    return str(value_e9)


def _count_range(low: str, high: str, unit: str) -> str:
    if unit in UNITS_PER_UL:
        return f"{int(Decimal(low) * 1000)}-{int(Decimal(high) * 1000)}"
    return f"{low}-{high}"


class _Builder:
    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.segments: list[str] = []
        self.obx_count = 0

    def unit_field(self, unit: str) -> str:
        escaped = _escape(unit)
        if not self.sender.coded_units:
            return escaped
        system = "UCUM" if unit in UCUM_UNITS else "L"
        return f"{escaped}^{escaped}^{system}"

    def obx(
        self, code: tuple[str, str, str], value: str, unit: str, ref: str, flag: str, when: str
    ) -> None:
        self.obx_count += 1
        name = code[1] if self.sender.long_names else code[2]
        self.segments.append(
            _segment(
                "OBX",
                {
                    1: str(self.obx_count),
                    2: "NM",
                    3: f"{code[0]}^{name}^LN",
                    5: value,
                    6: self.unit_field(unit),
                    7: ref,
                    8: flag,
                    11: "F",
                    14: when,
                },
            )
        )


def _message(rng: random.Random, index: int, seed: int, patients: int = 0) -> bytes:
    sender = rng.choice(SENDERS)
    if patients:  # a patient's CBCs come from one laboratory
        sender = SENDERS[index % patients % len(SENDERS)]
    unit = rng.choice(ALL_COUNT_UNITS)
    european = unit in UNITS_PER_LITRE
    sex = rng.choices(("F", "M", "U"), weights=(48, 48, 4))[0]
    given = rng.choice(GIVEN_F if sex == "F" else GIVEN_M)
    family = rng.choice(FAMILY)
    dob = datetime(1930, 1, 1) + timedelta(days=rng.randrange(0, 365 * 75))
    collected = EPOCH + timedelta(minutes=rng.randrange(0, 60 * 24 * 60))
    received = collected + timedelta(minutes=rng.randrange(8, 90), seconds=rng.randrange(60))
    resulted = received + timedelta(minutes=rng.randrange(5, 120), seconds=rng.randrange(60))
    offset = sender.offset
    control_id = f"G{seed:05d}{index:09d}"
    filler = f"F{seed % 100:02d}-{index:08d}"
    placer = f"P{rng.randrange(10**7, 10**8)}"
    mrn = f"{rng.randrange(10**6, 10**7)}"
    if patients:  # a daily CBC for each of ``patients`` patients (the lifecycle benchmark)
        mrn = f"{1000000 + index % patients}"
        day = timedelta(days=index // patients)
        collected, received, resulted = (EPOCH + day, EPOCH + day, EPOCH + day)
        received += timedelta(minutes=30)
        resulted += timedelta(hours=1)
    message_type = "ORU^R01^ORU_R01" if sender.version >= "2.5" else "ORU^R01"

    b = _Builder(sender)
    b.segments.append(
        _segment(
            "MSH",
            {
                3: sender.app,
                4: sender.facility,
                5: "EHR",
                6: "CLINIC",
                7: _ts(resulted, offset),
                9: message_type,
                10: control_id,
                11: "P",
                12: sender.version,
                18: "UNICODE UTF-8" if "µ" in unit else "",
            },
        ).rstrip("|")
    )
    family_text = _escape(family) if sender.long_names else _escape(family).upper()
    b.segments.append(
        f"PID|1||{mrn}^^^{sender.mrn_authority}^MR||{family_text}^{given}||{dob:%Y%m%d}|{sex}"
    )
    provider = (
        f"{rng.randrange(10**9, 10**10)}^{rng.choice(FAMILY)}^{rng.choice(GIVEN_F + GIVEN_M)}"
    )
    b.segments.append(f"ORC|RE|{placer}|{filler}||CM||||{_ts(collected, offset)}|||{provider}")
    b.segments.append(
        _segment(
            "OBR",
            {
                1: "1",
                2: placer,
                3: filler,
                4: "57021-8^CBC W Auto Differential panel - Blood^LN",
                7: _ts(collected, offset),
                14: _ts(received, offset),
                16: provider,
                22: _ts(resulted, offset),
                24: "HM",
                25: "F",
            },
        )
    )
    observed = _ts(collected, offset)

    normal = sender.normal_flag

    def add(
        code: tuple[str, str, str],
        shown: str,
        unit_: str,
        value: Decimal,
        low: str,
        high: str,
        ref: str = "",
    ) -> None:
        flag = _flag(value, Decimal(low), Decimal(high), normal)
        b.obx(code, shown, unit_, ref or f"{low}-{high}", flag, observed)

    wbc = _pick_wbc(rng)
    percents = _pick_percents(rng, wbc)
    counts = {cell: _q(wbc * p / 100, TWO_PLACES) for cell, p in percents.items()}
    low, high = COUNT_RANGES["wbc"]
    add(WBC, _count_text(wbc, unit), unit, wbc, low, high, _count_range(low, high, unit))

    ranges = RED_RANGES[sex]
    hgb_lo, hgb_hi = ranges["hgb"]
    hgb = max(_q(rng.gauss(float(hgb_lo) / 2 + float(hgb_hi) / 2, 1.6), ONE_PLACE), Decimal(5))
    mcv = _q(rng.gauss(90.0, 6.0), ONE_PLACE)
    mchc = _q(rng.gauss(33.5, 1.0), ONE_PLACE)
    hct = _q(hgb * 100 / mchc, ONE_PLACE)
    rbc = _q(hct * 10 / mcv, TWO_PLACES)
    mch = _q(hgb * 10 / rbc, ONE_PLACE)
    rdw = _q(rng.gauss(13.4, 1.1), ONE_PLACE)
    plt = Decimal(int(max(rng.gauss(250, 80), 8)))
    if wbc < 2 and rng.random() < 0.6:  # marrow suppression often takes the platelets too
        plt = Decimal(int(plt / 3))

    add(RBC, str(rbc), "10*12/L" if european else "10*6/uL", rbc, *ranges["rbc"])
    if european:  # mass concentrations in g/L
        add(
            HGB,
            str(int(hgb * 10)),
            "g/L",
            hgb,
            hgb_lo,
            hgb_hi,
            f"{int(Decimal(hgb_lo) * 10)}-{int(Decimal(hgb_hi) * 10)}",
        )
    else:
        add(HGB, str(hgb), "g/dL", hgb, hgb_lo, hgb_hi)
    add(HCT, str(hct), "%", hct, *ranges["hct"])
    add(MCV, str(mcv), "fL", mcv, "80.0", "100.0")
    add(MCH, str(mch), "pg", mch, "26.0", "34.0")
    if european:
        add(MCHC, str(int(mchc * 10)), "g/L", mchc, "31.0", "37.0", "310-370")
    else:
        add(MCHC, str(mchc), "g/dL", mchc, "31.0", "37.0")
    add(RDW, str(rdw), "%", rdw, "11.5", "14.5")
    low, high = COUNT_RANGES["plt"]
    add(PLT, _count_text(plt, unit), unit, plt, low, high, _count_range(low, high, unit))
    for cell in CELLS:
        add(DIFF_PERCENT[cell], str(percents[cell]), "%", percents[cell], *PERCENT_RANGES[cell])
    for cell in CELLS:
        low, high = COUNT_RANGES[cell]
        add(
            DIFF_COUNT[cell],
            _count_text(counts[cell], unit),
            unit,
            counts[cell],
            low,
            high,
            _count_range(low, high, unit),
        )
    return (SEGMENT_END.join(b.segments) + SEGMENT_END).encode("utf-8")


def generate_messages(count: int, seed: int, *, patients: int = 0) -> list[bytes]:
    """``count`` CBC ORU^R01 messages (19 OBX each), deterministic for a given ``seed``.
    With ``patients``, they are a daily CBC of that many patients (message ``i`` is day
    ``i // patients`` of patient ``i % patients``); otherwise every message is a patient."""
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = random.Random(seed)
    return [_message(rng, index, seed, patients) for index in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True, help="number of messages")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument(
        "--per-file",
        type=int,
        default=0,
        metavar="K",
        help="split into files of K messages each (default: one file with all of them)",
    )
    args = parser.parse_args(argv)
    if args.count < 0 or args.per_file < 0:
        parser.error("--count and --per-file must not be negative")
    messages = generate_messages(args.count, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.per_file:
        chunks = [messages[i : i + args.per_file] for i in range(0, len(messages), args.per_file)]
        for number, chunk in enumerate(chunks, 1):
            (args.out / f"cbc-seed{args.seed}-{number:05d}.hl7").write_bytes(b"".join(chunk))
        print(f"wrote {len(messages)} messages in {len(chunks)} files to {args.out}")
    else:
        path = args.out / f"cbc-{args.count}-seed{args.seed}.hl7"
        path.write_bytes(b"".join(messages))
        print(f"wrote {len(messages)} messages to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
