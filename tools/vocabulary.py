"""Resolve the words of a question ("A1c", "flu shot", "high blood pressure") to the concepts of one
patient's own record.

A question names a thing the way people talk; the record names it the way coders do ("Hemoglobin
A1c/Hemoglobin.total in Blood", LOINC 4548-4). The agent's answer-shaped tools (:mod:`tools.facts`)
take the question's words and resolve them here, against the displays and codes that occur in *this*
patient's record, so the model only has to copy the words it was given.

Resolution, strongest signal first:

1. lay names and abbreviations (:data:`LAY_NAMES`): a phrase of the question maps to display phrases
   and codes (``"a1c" -> "hemoglobin a1c", LOINC 4548-4``);
2. word overlap between the question's content words (lightly stemmed) and the concept's display;
3. a code typed in the question (``4548-4``) matches the concept's code.

An embedding similarity is deliberately not used here: measured on lay phrasings it ranks "glucose"
close to "A1c" and "BMI" close to "BMI percentile", exactly the confusions the claim check must
catch; word and phrase evidence is explainable in the tool's output ("matched: a1c -> hemoglobin a1c").

The table is the agent's own vocabulary; the evaluation's lay-phrasing generator keeps a separate one,
so the natural-phrasing sample does not test this table against itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# FHIR types the resolver looks at, by the kind words a question or a tool call uses.
KIND_TYPES: dict[str, tuple[str, ...]] = {
    "lab": ("Observation",),
    "vital": ("Observation",),
    "observation": ("Observation",),
    "condition": ("Condition",),
    "medication": ("MedicationRequest", "MedicationStatement", "MedicationAdministration"),
    "vaccine": ("Immunization",),
    "procedure": ("Procedure",),
    "visit": ("Encounter",),
    "allergy": ("AllergyIntolerance",),
    "careplan": ("CarePlan",),
    "device": ("Device",),
    "report": ("DiagnosticReport",),
}
ALL_TYPES: tuple[str, ...] = tuple(dict.fromkeys(t for ts in KIND_TYPES.values() for t in ts))

# Lay phrase -> (display phrases that name the same thing, codes). Phrases are matched on word
# boundaries in the lower-cased question; the longest phrase wins where several overlap.
LAY_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # labs and vitals (LOINC)
    "a1c": (("hemoglobin a1c",), ("4548-4",)),
    "hba1c": (("hemoglobin a1c",), ("4548-4",)),
    "hemoglobin a1c": (("hemoglobin a1c",), ("4548-4",)),
    "haemoglobin a1c": (("hemoglobin a1c",), ("4548-4",)),
    "glycated hemoglobin": (("hemoglobin a1c",), ("4548-4",)),
    "glycohemoglobin": (("hemoglobin a1c",), ("4548-4",)),
    "bmi": (("body mass index",), ("39156-5",)),
    "body mass index": (("body mass index",), ("39156-5",)),
    "bmi percentile": (("body mass index", "percentile"), ("59576-9",)),
    "weight": (("body weight",), ("29463-7",)),
    "body weight": (("body weight",), ("29463-7",)),
    "height": (("body height",), ("8302-2",)),
    "pulse": (("heart rate",), ("8867-4",)),
    "heart rate": (("heart rate",), ("8867-4",)),
    "hr": (("heart rate",), ("8867-4",)),
    "blood pressure": (("blood pressure panel",), ("85354-9",)),
    "bp": (("blood pressure panel",), ("85354-9",)),
    "systolic": (("systolic blood pressure",), ("8480-6",)),
    "systolic blood pressure": (("systolic blood pressure",), ("8480-6",)),
    "diastolic": (("diastolic blood pressure",), ("8462-4",)),
    "diastolic blood pressure": (("diastolic blood pressure",), ("8462-4",)),
    "respiratory rate": (("respiratory rate",), ("9279-1",)),
    "breathing rate": (("respiratory rate",), ("9279-1",)),
    "temperature": (("body temperature", "oral temperature"), ("8310-5", "8331-1")),
    "temp": (("body temperature", "oral temperature"), ("8310-5", "8331-1")),
    "oxygen saturation": (("oxygen saturation",), ("2708-6", "59408-5")),
    "o2 sat": (("oxygen saturation",), ("2708-6", "59408-5")),
    "spo2": (("oxygen saturation",), ("2708-6", "59408-5")),
    "pulse ox": (("oxygen saturation",), ("2708-6", "59408-5")),
    "cholesterol": (("cholesterol [mass/volume] in serum or plasma", "total cholesterol"), ("2093-3",)),
    "total cholesterol": (("cholesterol [mass/volume] in serum or plasma", "total cholesterol"), ("2093-3",)),
    "ldl": (("cholesterol in ldl", "low density lipoprotein"), ("18262-6", "2089-1", "13457-7")),
    "ldl cholesterol": (("cholesterol in ldl", "low density lipoprotein"), ("18262-6", "2089-1", "13457-7")),
    "bad cholesterol": (("cholesterol in ldl", "low density lipoprotein"), ("18262-6", "2089-1", "13457-7")),
    "hdl": (("cholesterol in hdl", "high density lipoprotein"), ("2085-9",)),
    "hdl cholesterol": (("cholesterol in hdl", "high density lipoprotein"), ("2085-9",)),
    "good cholesterol": (("cholesterol in hdl", "high density lipoprotein"), ("2085-9",)),
    "triglycerides": (("triglycerides", "triglyceride"), ("2571-8",)),
    "trigs": (("triglycerides", "triglyceride"), ("2571-8",)),
    "trig": (("triglycerides", "triglyceride"), ("2571-8",)),
    "creat": (("creatinine [mass/volume]",), ("38483-4", "2160-0")),
    "hay fever": (("allergic rhinitis",), ("367498001",)),
    "meningitis vaccine": (("meningococcal",), ("114", "136", "147", "148", "203", "163", "162")),
    "meningitis jab": (("meningococcal",), ("114", "136", "147", "148", "203", "163", "162")),
    "meningococcal vaccine": (("meningococcal",), ("114", "136", "147", "148", "203", "163", "162")),
    "whooping cough": (("tdap", "dtap"), ("115", "20", "106", "107")),
    "prediabetic": (("prediabetes",), ("15777000", "714628002")),
    "diabetic": (("diabetes",), ("44054006", "73211009")),
    "hypertensive": (("hypertension",), ("59621000", "38341003")),
    "asthmatic": (("asthma",), ()),
    "high triglycerides": (("hypertriglyceridemia",), ("302870006",)),
    "heart rhythm problem": (("atrial fibrillation", "arrhythmia"), ("49436004",)),
    "sugar": (("glucose", "diabetes"), ()),
    "blood pressure problem": (("hypertension",), ("59621000", "38341003")),
    "high bp": (("hypertension",), ("59621000", "38341003")),
    "blood clot in lung": (("pulmonary embolism",), ("59282003",)),
    "blood clot in her lung": (("pulmonary embolism",), ("59282003",)),
    "blood clot in his lung": (("pulmonary embolism",), ("59282003",)),
    "blood clot in the lung": (("pulmonary embolism",), ("59282003",)),
    "clot in lung": (("pulmonary embolism",), ("59282003",)),
    "blood clot": (("embolism", "thrombosis"), ()),
    "blood infection": (("sepsis",), ()),
    "dvt": (("deep venous thrombosis", "deep vein thrombosis"), ()),
    "pe": (("pulmonary embolism",), ("59282003",)),
    "pulmonary embolism": (("pulmonary embolism",), ("59282003",)),
    "egfr": (("glomerular filtration rate",), ("33914-3", "62238-1", "98979-8", "48643-1", "48642-3")),
    "gfr": (("glomerular filtration rate",), ("33914-3", "62238-1", "98979-8", "48643-1", "48642-3")),
    "kidney function": (("glomerular filtration rate",), ("33914-3", "62238-1", "98979-8")),
    "glucose": (("glucose",), ("2339-0", "2345-7")),
    "blood sugar": (("glucose",), ("2339-0", "2345-7")),
    "sugar level": (("glucose",), ("2339-0", "2345-7")),
    "creatinine": (("creatinine [mass/volume]",), ("38483-4", "2160-0")),
    "bun": (("urea nitrogen",), ("6299-2", "3094-0")),
    "urea": (("urea nitrogen",), ("6299-2", "3094-0")),
    "potassium": (("potassium",), ("6298-4", "2823-3")),
    "sodium": (("sodium",), ("2947-0", "2951-2")),
    "chloride": (("chloride",), ("2069-3", "2075-0")),
    "calcium": (("calcium",), ("49765-1", "17861-6")),
    "co2": (("carbon dioxide",), ("20565-8", "2028-9")),
    "bicarbonate": (("carbon dioxide", "bicarbonate"), ("20565-8", "2028-9")),
    "hemoglobin": (("hemoglobin [mass/volume] in blood",), ("718-7",)),
    "haemoglobin": (("hemoglobin [mass/volume] in blood",), ("718-7",)),
    "hgb": (("hemoglobin [mass/volume] in blood",), ("718-7",)),
    "hematocrit": (("hematocrit",), ("4544-3",)),
    "hct": (("hematocrit",), ("4544-3",)),
    "wbc": (("leukocytes",), ("6690-2",)),
    "white count": (("leukocytes",), ("6690-2",)),
    "white blood cells": (("leukocytes",), ("6690-2",)),
    "white blood cell count": (("leukocytes",), ("6690-2",)),
    "rbc": (("erythrocytes",), ("789-8",)),
    "red blood cells": (("erythrocytes",), ("789-8",)),
    "red blood cell count": (("erythrocytes",), ("789-8",)),
    "platelets": (("platelets",), ("777-3",)),
    "platelet count": (("platelets",), ("777-3",)),
    "plt": (("platelets",), ("777-3",)),
    "mcv": (("mcv",), ("787-2",)),
    "pain score": (("pain severity",), ("72514-3",)),
    "pain level": (("pain severity",), ("72514-3",)),
    "alt": (("alanine aminotransferase",), ("1742-6",)),
    "ast": (("aspartate aminotransferase",), ("1920-8",)),
    "albumin": (("albumin [mass/volume]",), ("1751-7",)),
    "bilirubin": (("bilirubin",), ("1975-2",)),
    "alk phos": (("alkaline phosphatase",), ("6768-6",)),
    "microalbumin": (("microalbumin",), ("14959-1",)),
    "smoking": (("tobacco smoking status",), ("72166-2",)),
    "smoking status": (("tobacco smoking status",), ("72166-2",)),
    "head circumference": (("head occipital-frontal circumference",), ("9843-4",)),
    "psa": (("prostate specific",), ("2857-1",)),
    "tsh": (("thyrotropin",), ("3016-3",)),
    # vaccines (CVX)
    "flu": (("influenza",), ()),
    "flu shot": (("influenza",), ()),
    "flu vaccine": (("influenza",), ()),
    "influenza": (("influenza",), ()),
    "tetanus": (("td (adult)", "tdap", "dtap", "tetanus"), ("113", "115", "09", "138", "139", "20", "106", "107")),
    "tetanus booster": (("td (adult)", "tdap"), ("113", "115", "09", "138", "139")),
    "td": (("td (adult)",), ("113", "09", "138", "139")),
    "tdap": (("tdap",), ("115",)),
    "dtap": (("dtap",), ("20", "106", "107", "110", "120", "146")),
    "pneumonia shot": (("pneumococcal",), ("133", "33", "152", "215", "216")),
    "pneumonia vaccine": (("pneumococcal",), ("133", "33", "152", "215", "216")),
    "pneumococcal": (("pneumococcal",), ("133", "33", "152", "215", "216")),
    "hpv": (("hpv",), ("62", "165", "118")),
    "shingles": (("zoster",), ("121", "187", "188")),
    "zoster": (("zoster",), ("121", "187", "188")),
    "hep b": (("hep b",), ("08", "43", "44", "45")),
    "hepatitis b": (("hep b",), ("08", "43", "44", "45")),
    "hep a": (("hep a",), ("83", "52", "85")),
    "hepatitis a": (("hep a",), ("83", "52", "85")),
    "mmr": (("mmr",), ("03", "94")),
    "measles": (("mmr",), ("03", "94")),
    "chickenpox": (("varicella",), ("21", "94")),
    "chicken pox": (("varicella",), ("21", "94")),
    "varicella": (("varicella",), ("21", "94")),
    "polio": (("ipv",), ("10", "89")),
    "hib": (("hib",), ("49", "17", "48", "51")),
    "meningococcal": (("meningococcal",), ("114", "136", "147", "148", "203", "163", "162")),
    "meningitis shot": (("meningococcal",), ("114", "136", "147", "148", "203", "163", "162")),
    "rotavirus": (("rotavirus",), ("119", "116", "122")),
    "covid shot": (("sars-cov-2", "covid"), ("207", "208", "210", "212", "213", "217", "218", "219", "221")),
    "covid vaccine": (("sars-cov-2", "covid"), ("207", "208", "210", "212", "213", "217", "218", "219", "221")),
    # conditions (everyday names -> words of SNOMED displays)
    "high blood pressure": (("hypertension",), ("59621000", "38341003")),
    "hypertension": (("hypertension",), ("59621000", "38341003")),
    "htn": (("hypertension",), ("59621000", "38341003")),
    "diabetes": (("diabetes",), ("44054006", "73211009")),
    "sugar diabetes": (("diabetes",), ("44054006",)),
    "t2dm": (("diabetes",), ("44054006",)),
    "prediabetes": (("prediabetes",), ("15777000", "714628002")),
    "pre-diabetes": (("prediabetes",), ("15777000", "714628002")),
    "high cholesterol": (("hyperlipidemia", "hypercholesterolemia"), ("55822004", "13644009")),
    "heart attack": (("myocardial infarction",), ("22298006", "399211009")),
    "mi": (("myocardial infarction",), ("22298006", "399211009")),
    "stroke": (("stroke", "cerebrovascular accident"), ("230690007",)),
    # clinicians' abbreviations (as typed in notes and questions)
    "cva": (("stroke", "cerebrovascular accident"), ("230690007",)),
    "tia": (("transient ischemic attack",), ("266257000",)),
    "mini stroke": (("transient ischemic attack",), ("266257000",)),
    "gerd": (("gastroesophageal reflux", "gastro-esophageal reflux"), ("235595009",)),
    "acid reflux": (("gastroesophageal reflux", "gastro-esophageal reflux"), ("235595009",)),
    "osa": (("sleep apnea",), ("78275009",)),
    "esrd": (("end-stage renal disease", "end stage renal disease"), ("46177005",)),
    "hld": (("hyperlipidemia",), ("55822004",)),
    "oa": (("osteoarthritis",), ()),
    "ra": (("rheumatoid arthritis",), ("69896004",)),
    "kidney stones": (("kidney stone", "nephrolithiasis", "renal calculus"), ()),
    "afib": (("atrial fibrillation",), ("49436004",)),
    "a-fib": (("atrial fibrillation",), ("49436004",)),
    "heart failure": (("heart failure",), ("88805009", "84114007")),
    "chf": (("heart failure",), ("88805009", "84114007")),
    "coronary artery disease": (("coronary", "ischemic heart disease"), ("53741008", "414545008")),
    "cad": (("coronary", "ischemic heart disease"), ("53741008", "414545008")),
    "copd": (("chronic obstructive", "emphysema"), ("185086009", "87433001", "13645005")),
    "emphysema": (("emphysema",), ("87433001",)),
    "ckd": (("chronic kidney disease",), ()),
    "kidney disease": (("chronic kidney disease", "kidney disease", "renal disease"), ()),
    "uti": (("urinary tract infection", "cystitis"), ()),
    "bladder infection": (("cystitis", "urinary tract infection"), ()),
    "ear infection": (("otitis media",), ("65363002",)),
    "strep throat": (("streptococcal sore throat", "streptococcal pharyngitis"), ("43878008",)),
    "strep": (("streptococcal",), ("43878008",)),
    "sore throat": (("pharyngitis", "sore throat"), ()),
    "sinus infection": (("sinusitis",), ()),
    "cold": (("common cold", "viral sinusitis", "nasopharyngitis"), ()),
    "common cold": (("common cold", "nasopharyngitis"), ()),
    "bronchitis": (("bronchitis",), ()),
    "pneumonia": (("pneumonia",), ()),
    "depression": (("depress",), ()),
    "depressed": (("depress",), ()),
    "anxiety": (("anxiety",), ()),
    "obesity": (("obesity", "body mass index 30+"), ()),
    "obese": (("obesity", "body mass index 30+"), ()),
    "overweight": (("obesity", "body mass index 30+", "overweight"), ()),
    "anemia": (("anemia",), ()),
    "anaemia": (("anemia",), ()),
    "arthritis": (("arthritis", "osteoarthritis"), ()),
    "osteoarthritis": (("osteoarthritis",), ()),
    "osteoporosis": (("osteoporosis",), ()),
    "dementia": (("dementia", "alzheimer"), ()),
    "alzheimers": (("alzheimer",), ()),
    "alzheimer's": (("alzheimer",), ()),
    "cancer": (("neoplasm", "carcinoma", "cancer", "lymphoma", "leukemia"), ()),
    "broken bone": (("fracture",), ()),
    "broken": (("fracture",), ()),
    "covid": (("covid-19",), ("840539006",)),
    "covid-19": (("covid-19",), ("840539006",)),
    "concussion": (("concussion",), ()),
    "sprain": (("sprain",), ()),
    "back pain": (("back pain",), ()),
    "migraine": (("migraine",), ()),
    "gout": (("gout",), ()),
    "epilepsy": (("epilepsy", "seizure"), ()),
    "seizures": (("seizure", "epilepsy"), ()),
    "sleep apnea": (("sleep apnea",), ()),
    "gallstones": (("cholelithiasis", "gallstone"), ()),
    "appendicitis": (("appendicitis",), ()),
    "smoker": (("smokes tobacco", "tobacco use"), ()),
    "opioid addiction": (("opioid abuse", "opioid", "drug addiction"), ()),
    "addiction": (("abuse", "addiction", "dependence"), ()),
    "pregnant": (("pregnancy", "normal pregnancy"), ("72892002",)),
    "pregnancy": (("pregnancy",), ("72892002",)),
    "miscarriage": (("miscarriage",), ()),
    # visits (Encounter class codes: HL7 v3 ActCode)
    "ambulatory": (("ambulatory",), ("AMB",)),
    "outpatient": (("ambulatory",), ("AMB",)),
    "office visit": (("ambulatory",), ("AMB",)),
    "clinic visit": (("ambulatory",), ("AMB",)),
    "outside the hospital": (("ambulatory",), ("AMB",)),
    "outside of the hospital": (("ambulatory",), ("AMB",)),
    "out of hospital": (("ambulatory",), ("AMB",)),
    "doctor's office": (("ambulatory",), ("AMB",)),
    "doctors office": (("ambulatory",), ("AMB",)),
    "inpatient": (("inpatient",), ("IMP",)),
    "hospital stay": (("inpatient",), ("IMP",)),
    "hospital stays": (("inpatient",), ("IMP",)),
    "hospitalization": (("inpatient",), ("IMP",)),
    "hospitalized": (("inpatient",), ("IMP",)),
    "admission": (("inpatient",), ("IMP",)),
    "admitted": (("inpatient",), ("IMP",)),
    "emergency": (("emergency",), ("EMER",)),
    "er": (("emergency",), ("EMER",)),
    "ed": (("emergency",), ("EMER",)),
    "emergency room": (("emergency",), ("EMER",)),
    "urgent care": (("urgent care",), ("urgentcare",)),
    "mammogram": (("mammography", "mammogram"), ()),
    "mammography": (("mammography", "mammogram"), ()),
    "well child": (("well child visit",), ("410620009",)),
    "well-child": (("well child visit",), ("410620009",)),
    "well-child checkup": (("well child visit",), ("410620009",)),
    "well child checkup": (("well child visit",), ("410620009",)),
    "well-baby": (("well child visit",), ("410620009",)),
    "well baby": (("well child visit",), ("410620009",)),
    "wellness": (("wellness", "check up", "general examination"), ("WELLNESS", "wellness")),
    "checkup": (("wellness", "check up", "general examination"), ("WELLNESS", "wellness")),
    "check-up": (("wellness", "check up", "general examination"), ("WELLNESS", "wellness")),
    "physical": (("wellness", "check up", "general examination"), ("WELLNESS", "wellness")),
}

# Words that say what kind of record a phrase is about, not which one: dropped before word matching.
_FILLER = frozenset("""
a an the his her their its he she they patient patients pt record records recorded chart file on in of for to
and or with any ever last latest most recent first earliest initial current currently what was is were are did
does do has have had how many much when which who value values level levels reading readings result results
test tests measurement measurements measured lab labs number count shot shots vaccine vaccines vaccination
vaccinations immunization immunizations jab jabs dose doses visit visits encounter encounters appointment
appointments prescription prescriptions prescribed medication medications med meds drug drugs history hx
diagnosis diagnosed diagnoses condition conditions problem problems procedure procedures surgery
allergy allergies allergic care plan plans careplan careplans given get got received receive taking take took start started
date dates day days month months year years time times ago old age aged tell me can you could please show
give find check know see look order ordered orders put doctor doctors physician him them it that this those
these there then than with without from between since until before after during compared comparing
higher lower up down rise rose fall fell increase increased decrease decreased went go going change changed
trend trending right total overall ever never yet so far still again also just only over under about
whether if no not yes new old be been being get gets having much more less many number first-time
picked found detected noted documented diagnosed-with reported listed shown
marked resolved active inactive stopped ended undergo underwent undergone did does having recent value
list lists which what file intolerance intolerances known
performed perform administered now today presently present
should would gotten getting aware flag flagged
""".split())

_TOKEN = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def stem(word: str) -> str:
    """A light English stem: plurals and a few common endings, enough for display matching."""
    w = word.lower().replace("'", "")
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("es", "e"), ("s", "")):
        if len(w) > 4 and w.endswith(suffix) and not w.endswith("ss"):
            return w[: -len(suffix)] + repl
    return w


#: stems of the question and kind words that name no thing (see :func:`content_stems`)
FILLER_STEMS = frozenset(stem(w) for w in _FILLER)


_WEAK_WORDS = """
injection injections injectable tablet tablets oral capsule capsules syringe prefilled solution cream
ointment inhaler inhalation actuat patch suspension spray extended release hour topical chewable
disintegrating nasal ophthalmic vial pen kit unit units
chronic acute disorder finding procedure situation level blood serum plasma screening assessment
test body total severe mild moderate left right upper lower
""".split()


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``."""
    return _TOKEN.findall(text.lower())


def named_words(text: str) -> list[str]:
    """The words of ``text`` that are not question or kind words (short ones included)."""
    return [w for w in words(text) if w not in _FILLER and len(w) > 1]


def content_stems(text: str) -> set[str]:
    """Stems of the words that name a thing (kind words and question words dropped)."""
    # Words of one or two letters are grammar ("at", "on", "he"); the abbreviations that matter (BP, HR, MI)
    # are lay phrases, matched before this.
    return {stem(w) for w in words(text) if w not in _FILLER and len(w) > 2 and not re.fullmatch(r"[\d-]+", w)}


@dataclass
class Concept:
    """One thing the record names: a FHIR type plus a code (or a display when uncoded)."""

    type: str
    key: str
    display: str
    codes: set[str] = field(default_factory=set)
    refs: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How a tool output names the concept."""
        code = next((c for c in sorted(self.codes) if "|" not in c), None)
        return f"{self.display} ({code})" if code and code not in self.display else self.display


@dataclass
class Match:
    """A concept with the evidence that matched it."""

    concept: Concept
    score: float
    why: str
    #: the question's word stems this concept's name holds (word matches only; empty for phrase/code matches)
    covered: frozenset[str] = frozenset()


_DRUG_TYPES = frozenset({"MedicationRequest", "MedicationStatement", "MedicationAdministration", "Immunization"})


def weak_match(m: Match) -> bool:
    """A word match that names too little of the concept to say the words meant it: fewer than half of the
    name's words ("low" of Low Density Lipoprotein Cholesterol). Strengths, units and dose forms do not count
    as words of a drug's name, whose ingredient (a word of five letters or more) is enough ("albuterol").
    Lay names, codes, whole names and whole kinds are never weak."""
    if not m.covered:
        return False
    weak = {stem(w) for w in _WEAK_WORDS}
    names = {x for x in content_stems(m.concept.display) if not re.search(r"\d", x) and x not in weak}
    # A covered word may be a short form of the name's ("weigh" of "weight"): matched both ways by prefix.
    hit = {n for n in names if any(n.startswith(c) or c.startswith(n) for c in m.covered)}
    if m.concept.type in _DRUG_TYPES:
        return not any(len(n) >= 5 for n in hit)
    return len(hit) < max(1, len(names)) / 2


def lay_phrases(text: str) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """Lay phrases found in ``text`` (longest first, non-overlapping): ``(phrase, displays, codes)``."""
    # Matched on stems, so "office visits" finds "office visit" and "ear infections" finds "ear infection".
    low = " " + " ".join(stem(w) for w in words(text)) + " "
    found: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []
    taken: list[tuple[int, int]] = []
    for phrase in sorted(LAY_NAMES, key=len, reverse=True):
        needle = " " + " ".join(stem(w) for w in words(phrase)) + " "
        start = low.find(needle)
        if start < 0:
            continue
        span = (start, start + len(needle))
        if any(s < span[1] and span[0] < e for s, e in taken):
            continue
        taken.append(span)
        displays, codes = LAY_NAMES[phrase]
        found.append((phrase, displays, codes))
    names = {p for p, _, _ in found}
    if names & {"systolic", "diastolic"}:
        # "diastolic BP" is the diastolic reading, not the panel "BP" names on its own.
        found = [f for f in found if f[0] not in ("bp", "blood pressure")]
    return found


def phrase_type(codes: tuple[str, ...]) -> str | None:
    """The FHIR type a lay phrase's codes name: LOINC (a dash before the check digit) is a measurement,
    short CVX numbers a vaccine, HL7 encounter classes a visit; None when the codes do not say."""
    if not codes:
        return None
    if all("-" in c for c in codes):
        return "Observation"
    if all(c.isdigit() and len(c) <= 3 for c in codes):
        return "Immunization"
    if all(c.isupper() or c.islower() and c.isalpha() for c in codes) and all(c.isalpha() for c in codes):
        return "Encounter"
    return None


def _display_has(display_low: str, phrase: str) -> bool:
    # Word-boundary containment, with plural tolerance on the last word ("triglyceride" ~ "triglycerides").
    pat = r"(?<![a-z0-9])" + re.escape(phrase) + r"s?(?![a-z0-9])"
    return re.search(pat, display_low) is not None


def score_concept(query: str, concept: Concept, *, phrases=None, stems: set[str] | None = None,
                  weights: dict[str, float] | None = None) -> Match | None:
    """How well ``query`` names ``concept`` (None: not at all)."""
    phrases = lay_phrases(query) if phrases is None else phrases
    stems = content_stems(query) if stems is None else stems
    low = concept.display.lower()
    bare_codes = {c.split("|")[-1] for c in concept.codes}
    # The concept's whole name, written out in the query ("High Density Lipoprotein Cholesterol"): that name,
    # before any lay phrase inside it ("cholesterol" alone names total cholesterol). Longer names win.
    name = " ".join(words(concept.display))
    if len(name.split()) >= 2 and (" " + name + " ") in (" " + " ".join(words(query)) + " "):
        return Match(concept, 3.5 + len(name) / 1000, f"name {concept.display}")
    best: Match | None = None
    for phrase, displays, codes in phrases:
        kind = phrase_type(codes)
        if kind and kind != concept.type:
            continue  # "BMI" names the measurement, not the finding "Body mass index 30+ - obesity"
        if bare_codes & set(codes):
            return Match(concept, 3.0, f"{phrase} -> code {sorted(bare_codes & set(codes))[0]}")
        for d in displays:
            if _display_has(low, d):
                m = Match(concept, 2.0 + len(d) / 1000, f"{phrase} -> {d}")
                if best is None or m.score > best.score:
                    best = m
    if best:
        return best
    # A code typed in the question.
    # Only what looks like a code: a LOINC code (check digit after a dash) or a long SNOMED/RxNorm number;
    # "0-10" in "Pain severity - 0-10 verbal numeric rating" is not CVX 10.
    for tok in re.findall(r"(?<![\d-])\d{3,7}-\d\b|\b\d{5,18}\b", query):
        if tok in bare_codes:
            return Match(concept, 2.5, f"code {tok}")
    if not stems:
        return None
    dstems = {stem(w) for w in words(concept.display)}
    common = stems & dstems
    # Prefix tolerance for short forms people type ("hypertens", "vit d"), and for a name's word with a short
    # ending added ("asthmatic" ~ "asthma"); a longer word is another word ("colonoscopy" is not "colon").
    for s in stems - common:
        if len(s) >= 5 and any(d.startswith(s) or (s.startswith(d) and len(s) - len(d) <= 3)
                               for d in dstems if len(d) >= 5):
            common = common | {s}
    if not common:
        return None
    # Share of the question's words found; a small bonus for shorter displays (more specific names).
    # Share of the question's words found, each weighted by how rare it is among the record's names: in
    # "enoxaparin injections", "enoxaparin" says which drug and "injection" fits a dozen.
    w = weights or {}
    frac = sum(w.get(x, 1.0) for x in common) / sum(w.get(x, 1.0) for x in stems)
    if frac <= 0.5:  # more than half of what the question names must be named by the concept
        return None
    return Match(concept, frac + 1.0 / (10 + len(dstems)), "words: " + ", ".join(sorted(common)), frozenset(common))


def resolve(query: str, concepts: Iterable[Concept], *, single: bool = False) -> list[Match]:
    """The concepts of ``concepts`` that ``query`` names, best first.

    ``single`` (for measurements: one LOINC code is one series) keeps only the best concept; otherwise every
    concept whose score is close to the best is kept ("flu shot" names every influenza vaccine code).
    """
    phrases = lay_phrases(query)
    stems = content_stems(query)
    # A phrase that is itself a lay name should not also be matched word by word ("blood pressure" words
    # would otherwise match "blood" in every blood test).
    if phrases:
        covered = {stem(w) for p, _, _ in phrases for w in words(p)}
        rest = stems - covered
    else:
        rest = stems
    concepts = list(concepts)
    df: dict[str, int] = {}
    for c in concepts:
        for x in {stem(w) for w in words(c.display)}:
            df[x] = df.get(x, 0) + 1
    n = max(1, len(concepts))
    # A word no name of the record holds counts as much as the rarest one that some name holds.
    weak = {stem(w) for w in _WEAK_WORDS}
    weights = {x: (0.25 if x in weak else 1.0) * (math.log(1 + n / df[x]) if x in df else math.log(1 + n))
               for x in stems}
    matches = []
    for c in concepts:
        m = score_concept(query, c, phrases=phrases, stems=stems if not phrases else rest, weights=weights)
        if m:
            matches.append(m)
    if not matches:
        return []
    matches.sort(key=lambda m: (-m.score, -len(m.concept.refs), m.concept.display))
    top = matches[0].score
    if single:
        return [matches[0]]
    floor = 2.0 if top >= 2.0 else max(0.5, top - 0.25)
    kept = [m for m in matches if m.score >= floor]
    # A name that holds only some of the words another kept name holds is the less specific concept:
    # "chronic sinusitis" names "Chronic sinusitis", not also "Sinusitis" or "Viral sinusitis".
    return [m for m in kept if not any(m.covered < o.covered for o in kept if m.covered)]


# Grammar and counting words end a noun phrase; kind words ("vaccine", "shot", "allergic") do not, because
# they belong to the name ("meningitis vaccine", "allergic rhinitis"). Kept apart from the vocabulary's
# filler list, which drops kind words on purpose.
_PHRASE_STOP = frozenset("""
a an the of in on at for to by from with without and or as into during since before after between until
how many much number count total what which who whom that this these those there here ever any all every
is are was were be been being has have had having do does did done get got gets given received receive
patient patients people persons person individuals individual women woman men man female females male males
children child kids kid adults adult different distinct unique separate everyone everybody anyone across among
data record records recorded chart database diagnosed diagnosis history year years time times spent
their his her its they them he she it we our us you your
last latest first recent most current currently earliest initial previous newest oldest
value values level levels reading readings result results measurement measurements
i me my mine when where why whose remind tell show give pull please can could would should will let know
need want see check find look
""".split())

#: words that qualify a thing without naming it ("any prior CVA", "a known seizure disorder")
QUALIFIERS = frozenset("""prior previous previously past earlier known documented confirmed noted listed
recorded diagnosed ongoing active history""".split())

_PHRASE_BREAKS = re.compile(r"[^\w\s'-]+")


def noun_phrases(text: str) -> list[list[str]]:
    """The runs of words that are not grammar or counting words (numbers dropped), in order.

    Punctuation ends a run: "thin bones (osteoporosis)" gives ``["thin", "bones"]`` and ``["osteoporosis"]``."""
    runs: list[list[str]] = []
    for segment in _PHRASE_BREAKS.split(text.lower()):
        run: list[str] = []
        for w in words(segment):
            if len(w) == 1:
                # a letter after a word is part of the name ("hepatitis a", "vitamin d"); a letter alone (the
                # "s" of "patient's") starts nothing
                if run:
                    run.append(w)
            elif w in _PHRASE_STOP or re.fullmatch(r"[\d-]+", w):
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(w)
        if run:
            runs.append(run)
    return runs


def resolve_phrases(query: str, concepts: Iterable[Concept], *, single: bool = False) -> list[Match]:
    """:func:`resolve` on the whole ``query``; when that names nothing, on each of its noun phrases, longest
    first, so words around the name ("the little guy's asthma") do not hide it. Not for yes/no questions:
    there a part of the words ("colon" of "cancer of the colon") may name something the whole does not."""
    concepts = list(concepts)
    found = resolve(query, concepts, single=single)
    if found:
        return found
    runs = noun_phrases(query)
    if len(runs) < 2:
        return []
    for run in sorted(runs, key=len, reverse=True):
        found = resolve(" ".join(run), concepts, single=single)
        if found:
            return found
    return []


# Topics that clinical notes write about in other words than people ask with ("how far did he get in
# school" -> the note says "has completed some college courses"): added to a free-text search's words, and
# read by tools.note_facts. Keys are stems (:func:`stem`) of the words people ask with.
_EDUCATION = "education college school degree graduate graduated diploma courses"
_WORK = "employment employed unemployed occupation work job"
_MONEY = "socioeconomic income"
_SMOKING = "smoker smokes tobacco smoking"
_ALCOHOL = "alcohol alcoholic drinks drinking"
_INSURANCE = "insurance medicaid medicare unitedhealthcare aetna cigna humana"
_COMPLAINT = "complaint complains presents symptoms"
NOTE_TOPICS: dict[str, str] = {
    **dict.fromkeys(("school", "education", "educated", "college", "degree", "schooling", "graduate"), _EDUCATION),
    **dict.fromkeys(("job", "work", "works", "working", "employed", "employment", "occupation",
                     "unemployed"), _WORK),
    **dict.fromkeys(("income", "socioeconomic", "money", "wealth", "economic", "poverty", "class"), _MONEY),
    **dict.fromkeys(("smoke", "smoking", "smoker", "tobacco", "cigarette"), _SMOKING),
    **dict.fromkeys(("alcohol", "drink", "drinking", "drinker", "alcoholic"), _ALCOHOL),
    **dict.fromkeys(("insurance", "insured", "coverage", "insurer"), _INSURANCE),
    # "what brought her in", "what was bothering him": the visit's complaints
    **dict.fromkeys(("complaint", "complain", "complained", "symptom", "complaining", "bothering", "brought"),
                    _COMPLAINT),
    **dict.fromkeys(("sexual", "orientation", "sexuality"), "sexual heterosexual homosexual bisexual orientation"),
}
#: the heading of the history-and-physical section that writes about each topic of :data:`NOTE_TOPICS`
NOTE_SECTIONS: dict[str, str] = {
    k: ("chief complaint" if v == _COMPLAINT else "social history") for k, v in NOTE_TOPICS.items()}


def expand_note_query(query: str) -> str:
    """``query`` plus the words notes use for the topics it names (see :data:`NOTE_TOPICS`)."""
    extra = [NOTE_TOPICS[w] for w in dict.fromkeys(stem(x) for x in words(query)) if w in NOTE_TOPICS]
    return query if not extra else query + " " + " ".join(extra)

