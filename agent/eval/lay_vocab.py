"""The evaluation's own lay vocabulary: the everyday names people type for codes in the record.

Each :class:`Concept` maps a set of codes (``system|code``) to the names a person would use ("A1c",
"flu shot", "simvastatin", "high blood pressure"). The table belongs to the evaluation, not to the agent:
the agent resolves words with its own, independent resolver, so a sample phrased with these names is
not tuned to the agent's vocabulary.

``ambiguous_with`` lists codes that make a question in lay words unclear for a patient who has them
(a child's DTaP answers "last tetanus shot?" as well as an adult Td; "any history of diabetes?" is not
a clean "no" for a patient with diabetic kidney disease): such a patient is not asked about the concept.
A concept spanning several codes (two LOINC codes for glucose, Td and Tdap) is answered over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LOINC = "http://loinc.org"
CVX = "http://hl7.org/fhir/sid/cvx"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class Concept:
    """Codes a lay name stands for. ``names[0]`` is the plainest name; all are used in phrasings. A name of
    something one has "a" case of carries its article ("a stroke"), so "has she ever had {name}?" reads right."""

    key: str
    system: str
    codes: frozenset[str]
    names: tuple[str, ...]
    ambiguous_with: frozenset[str] = field(default_factory=frozenset)
    #: a long-standing condition, for which "how old at diagnosis" has one answer (not a recurring infection)
    chronic: bool = False

    def keys(self) -> set[str]:
        """``system|code`` of every code of the concept."""
        return {f"{self.system}|{c}" for c in self.codes}

    def ambiguous_keys(self) -> set[str]:
        """``system|code`` of the codes that make the concept unclear for a patient."""
        return {f"{self.system}|{c}" for c in self.ambiguous_with}


def _c(key: str, system: str, codes: str, names: str, ambiguous: str = "", chronic: bool = False) -> Concept:
    return Concept(key, system, frozenset(codes.split()), tuple(n.strip() for n in names.split(";")),
                   frozenset(ambiguous.split()), chronic)


# Labs and vitals. Systolic and diastolic pressure are components of the blood-pressure panel (85354-9).
LABS: tuple[Concept, ...] = (
    _c("a1c", LOINC, "4548-4", "A1c; HbA1c; hemoglobin A1c; A1C"),
    _c("bmi", LOINC, "39156-5", "BMI; body mass index"),
    _c("pulse", LOINC, "8867-4", "pulse; heart rate; resting heart rate"),
    _c("weight", LOINC, "29463-7", "weight; body weight"),
    _c("height", LOINC, "8302-2", "height"),
    _c("cholesterol", LOINC, "2093-3", "cholesterol; total cholesterol"),
    _c("ldl", LOINC, "18262-6", "LDL; LDL cholesterol; bad cholesterol"),
    _c("hdl", LOINC, "2085-9", "HDL; HDL cholesterol; good cholesterol"),
    _c("triglycerides", LOINC, "2571-8", "triglycerides; trigs"),
    _c("egfr", LOINC, "33914-3", "eGFR; GFR; kidney function (eGFR)"),
    _c("glucose", LOINC, "2339-0 2345-7", "glucose; blood sugar; sugar level", ambiguous="5792-7"),
    _c("creatinine", LOINC, "38483-4 2160-0", "creatinine; creat"),
    _c("systolic", LOINC, "8480-6", "systolic pressure; systolic BP; top blood pressure number"),
    _c("diastolic", LOINC, "8462-4", "diastolic pressure; diastolic BP; bottom blood pressure number"),
    _c("temperature", LOINC, "8310-5", "temperature; temp; body temperature"),
    _c("resp_rate", LOINC, "9279-1", "breathing rate; respiratory rate; resp rate"),
    _c("hemoglobin", LOINC, "718-7", "hemoglobin; Hgb; hemoglobin level"),
    _c("platelets", LOINC, "777-3", "platelets; platelet count"),
    _c("wbc", LOINC, "6690-2", "white count; WBC; white blood cell count"),
    _c("potassium", LOINC, "6298-4 2823-3", "potassium; potassium level"),
    _c("sodium", LOINC, "2947-0 2951-2", "sodium; sodium level"),
    _c("oxygen", LOINC, "2708-6 2713-6", "oxygen saturation; O2 sat; oxygen level"),
)

#: the labs and vitals the generated questions ask about: the ones people ask about by name in everyday care
#: (the others stay in the table for hand-written questions)
EVERYDAY_LABS = ("a1c", "bmi", "pulse", "weight", "cholesterol", "ldl", "hdl", "triglycerides", "egfr", "glucose",
                 "creatinine", "systolic", "diastolic", "hemoglobin")

VACCINES: tuple[Concept, ...] = (
    _c("flu", CVX, "140", "flu shot; flu vaccine; influenza vaccine; flu jab"),
    # A child's DTaP also protects against tetanus: "last tetanus shot?" is unclear for a patient who had it.
    _c("tetanus", CVX, "113 115", "tetanus booster; tetanus shot; Td/Tdap booster; tetanus vaccine", ambiguous="20"),
    _c("pneumococcal", CVX, "133 33", "pneumonia shot; pneumonia vaccine; pneumococcal vaccine"),
    _c("hpv", CVX, "62", "HPV shot; HPV vaccine; HPV jab"),
    _c("shingles", CVX, "121", "shingles shot; shingles vaccine; zoster vaccine"),
    _c("meningitis", CVX, "114", "meningitis shot; meningococcal vaccine; meningitis vaccine"),
    _c("hep_b", CVX, "43 08", "hep B shot; hepatitis B vaccine; hep B vaccine"),
    _c("hep_a", CVX, "52 83", "hep A shot; hepatitis A vaccine; hep A vaccine"),
    _c("chickenpox", CVX, "21", "chickenpox shot; chickenpox vaccine; varicella vaccine"),
    _c("mmr", CVX, "03", "MMR; MMR shot; measles shot"),
    _c("polio", CVX, "10", "polio vaccine; polio shot"),
    _c("dtap", CVX, "20", "DTaP; DTaP shot"),
)

# Drugs by their generic name only (no brand names). Combination products that contain the drug make the lay name unclear.
DRUGS: tuple[Concept, ...] = (
    _c("simvastatin", RXNORM, "314231 312961", "simvastatin"),
    _c("lisinopril", RXNORM, "314076", "lisinopril"),
    _c("amlodipine", RXNORM, "308136 197361", "amlodipine"),
    _c("hydrochlorothiazide", RXNORM, "310798", "hydrochlorothiazide; HCTZ"),
    _c("clopidogrel", RXNORM, "309362", "clopidogrel"),
    _c("nitroglycerin", RXNORM, "705129", "nitroglycerin"),
    _c("metformin", RXNORM, "860975", "metformin"),
    _c("warfarin", RXNORM, "855332", "warfarin"),
    _c("digoxin", RXNORM, "197604", "digoxin"),
    _c("verapamil", RXNORM, "897718", "verapamil"),
    _c("ibuprofen", RXNORM, "310965 198405 206905", "ibuprofen"),
    _c("naproxen", RXNORM, "849574 198014", "naproxen"),
    _c("acetaminophen", RXNORM, "313782 209387 313820 198440", "acetaminophen",
       ambiguous="1043400 856987 1049625 993770 857005"),
    _c("amoxicillin", RXNORM, "308182", "amoxicillin", ambiguous="562251"),
    _c("amoxicillin_clavulanate", RXNORM, "562251", "amoxicillin-clavulanate; amox-clav"),
    _c("penicillin", RXNORM, "834061 834102", "penicillin; penicillin V"),
    _c("cefuroxime", RXNORM, "309097", "cefuroxime"),
    _c("nitrofurantoin", RXNORM, "311989", "nitrofurantoin"),
    _c("ferrous_sulfate", RXNORM, "310325", "ferrous sulfate; iron tablets"),
    _c("epinephrine", RXNORM, "1870230 1660014", "epinephrine; epinephrine auto-injector"),
    _c("albuterol", RXNORM, "2123111 245314", "albuterol; albuterol inhaler"),
    _c("fluticasone", RXNORM, "895994", "fluticasone", ambiguous="896209"),
    _c("loratadine", RXNORM, "665078", "loratadine"),
    _c("diphenhydramine", RXNORM, "1049630", "diphenhydramine"),
    _c("tramadol", RXNORM, "835603", "tramadol"),
    _c("meperidine", RXNORM, "861467", "meperidine"),
    _c("alendronate", RXNORM, "904419", "alendronate"),
    _c("galantamine", RXNORM, "310436", "galantamine"),
    _c("memantine", RXNORM, "996740", "memantine"),
    _c("donepezil", RXNORM, "997223 1100184", "donepezil"),
    _c("phenazopyridine", RXNORM, "1094107", "phenazopyridine"),
    _c("medroxyprogesterone", RXNORM, "1000126", "medroxyprogesterone"),
    _c("insulin", RXNORM, "106892", "insulin"),
    _c("enoxaparin", RXNORM, "854235 854252 854228", "enoxaparin"),
    _c("hydroxychloroquine", RXNORM, "979092", "hydroxychloroquine"),
)

_DIABETES_LIKE = "127013003 368581000119106 90781000119102 157141000119108 422034002 1501000119109"
_HEART_LIKE = "410429000 429007001 84114007 88805009 49436004 22298006 399211009"

CONDITIONS: tuple[Concept, ...] = (
    _c("asthma", SNOMED, "195967001 233678006", "asthma", chronic=True),
    _c("hypertension", SNOMED, "59621000", "high blood pressure; hypertension; HTN", chronic=True),
    _c("diabetes", SNOMED, "44054006", "diabetes; type 2 diabetes; sugar diabetes", ambiguous=_DIABETES_LIKE,
       chronic=True),
    _c("prediabetes", SNOMED, "15777000", "prediabetes; borderline diabetes", chronic=True),
    _c("hyperlipidemia", SNOMED, "55822004", "high cholesterol; hyperlipidemia", chronic=True),
    _c("high_triglycerides", SNOMED, "302870006", "high triglycerides; hypertriglyceridemia", chronic=True),
    _c("anemia", SNOMED, "271737000", "anemia", chronic=True),
    _c("obesity", SNOMED, "162864005 408512008", "obesity", chronic=True),
    _c("covid", SNOMED, "840539006", "COVID; covid", ambiguous="840544004"),
    _c("pneumonia", SNOMED, "233604007", "pneumonia"),
    _c("sinusitis", SNOMED, "444814009 36971009 75498004", "a sinus infection; sinusitis", ambiguous="40055000"),
    _c("chronic_sinusitis", SNOMED, "40055000", "chronic sinusitis; chronic sinus problems", chronic=True),
    _c("bronchitis", SNOMED, "10509002", "bronchitis; acute bronchitis", ambiguous="185086009"),
    _c("strep", SNOMED, "43878008", "strep throat; strep"),
    _c("ear_infection", SNOMED, "65363002", "an ear infection; otitis media; ear infections"),
    _c("stroke", SNOMED, "230690007", "a stroke; stroke"),
    _c("cad", SNOMED, "53741008", "coronary artery disease; heart disease (CAD); CAD", ambiguous=_HEART_LIKE,
       chronic=True),
    _c("afib", SNOMED, "49436004", "atrial fibrillation; a-fib; AFib", chronic=True),
    _c("osteoporosis", SNOMED, "64859006", "osteoporosis; thin bones (osteoporosis)", chronic=True),
    _c("copd", SNOMED, "185086009 87433001", "COPD; emphysema or chronic bronchitis", chronic=True),
    _c("alzheimers", SNOMED, "26929004", "Alzheimer's; Alzheimer's disease; dementia (Alzheimer's)", chronic=True),
    _c("back_pain", SNOMED, "278860009", "chronic back pain; low back pain", chronic=True),
    _c("neck_pain", SNOMED, "1121000119107", "chronic neck pain; neck pain", chronic=True),
    _c("pulmonary_embolism", SNOMED, "706870000", "a blood clot in the lungs; a pulmonary embolism; PE"),
    _c("sepsis", SNOMED, "770349000 91302008", "sepsis; blood infection (sepsis)", ambiguous="76571007"),
    _c("ckd", SNOMED, "431855005 431856006", "kidney disease; CKD; chronic kidney disease",
       ambiguous="127013003 90781000119102 433144002", chronic=True),
    _c("miscarriage", SNOMED, "19169002", "a miscarriage; miscarriage"),
    _c("concussion", SNOMED, "62106007 110030002", "a concussion; concussion"),
    _c("ankle_sprain", SNOMED, "44465007", "a sprained ankle; an ankle sprain"),
    _c("ankle_fracture", SNOMED, "16114001", "a broken ankle; an ankle fracture"),
    _c("whiplash", SNOMED, "39848009", "whiplash"),
    _c("heart_failure", SNOMED, "84114007 88805009", "heart failure; CHF", chronic=True),
    _c("depression", SNOMED, "370143000", "depression; major depression", chronic=True),
    _c("seizures", SNOMED, "128613002", "seizure disorder; epilepsy", ambiguous="703151001", chronic=True),
    _c("appendicitis", SNOMED, "74400008", "appendicitis"),
    _c("migraine", SNOMED, "124171000119105", "migraines; migraine", chronic=True),
    _c("rheumatoid_arthritis", SNOMED, "69896004", "rheumatoid arthritis; RA", chronic=True),
    _c("osteoarthritis", SNOMED, "239873007 239872002 201834006", "osteoarthritis; arthritis (OA)", chronic=True,
       ambiguous="69896004"),
    _c("allergic_rhinitis", SNOMED, "232353008 446096008 367498001", "hay fever; allergic rhinitis; seasonal allergies",
       chronic=True),
    _c("eczema", SNOMED, "24079001", "eczema; atopic dermatitis", chronic=True),
    _c("metabolic_syndrome", SNOMED, "237602007", "metabolic syndrome", chronic=True),
    _c("uti", SNOMED, "301011002 38822007 197927001", "a UTI; UTIs; a urinary tract infection; a bladder infection"),
    _c("lung_cancer", SNOMED, "254637007 424132000 254632001 67811000119102", "lung cancer", chronic=True,
       ambiguous="162573006"),
    _c("breast_cancer", SNOMED, "254837009", "breast cancer", chronic=True),
    _c("dvt", SNOMED, "132281000119108", "a DVT; a blood clot in the leg"),
    _c("fibromyalgia", SNOMED, "203082005 95417003", "fibromyalgia", chronic=True),
)

ALL: dict[str, Concept] = {c.key: c for c in (*LABS, *VACCINES, *DRUGS, *CONDITIONS)}
if len(ALL) != len(LABS) + len(VACCINES) + len(DRUGS) + len(CONDITIONS):
    raise ValueError("lay concept keys must be unique across labs, vaccines, drugs and conditions")


def concept(key: str) -> Concept:
    """The concept named ``key`` (``KeyError`` naming the known keys when absent)."""
    try:
        return ALL[key]
    except KeyError:
        raise KeyError(f"unknown lay concept {key!r}") from None


PRONOUNS = {
    "male": {"subj": "he", "obj": "him", "pos": "his"},
    "female": {"subj": "she", "obj": "her", "pos": "her"},
}

MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December"]


def spoken_day(iso: str, style: int) -> str:
    """A ``YYYY-MM-DD`` day as people write it: ISO, US numeric, month name first, day first, short month."""
    y, m, d = (int(x) for x in iso.split("-"))
    month = MONTH_NAMES[m - 1]
    return [iso, f"{m}/{d}/{y}", f"{month} {d}, {y}", f"{d} {month} {y}", f"{month[:3]} {d} {y}"][style % 5]
