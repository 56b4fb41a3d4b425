"""Hand-phrased notes questions over synthea-blaze-120 (session 20). Gold from the raw note text through the
generator's own parser (agent.eval.gen_notes._facts), which shares no code with tools.note_facts."""
import json, random, re, sys
from ehr_agent.tools.store import open_store
from ehr_agent.agent.eval.fhirdata import PatientRecord, clinical_day, note_text, ref
from ehr_agent.agent.eval.gen_notes import _facts, EDUCATION_OPTIONS, SOCIO_OPTIONS, _report_twins
from ehr_agent.agent.eval.gen_common import make_task
from ehr_agent.agent.eval.tasks import ChoiceGold, SetGold, TextGold, YesNoGold

rng = random.Random(2020)
store = open_store(sys.argv[1])
pids = sorted(p["id"] for p in store.search_all("Patient", {"_count": "1000"}))
used = {json.loads(l)["patient"] for l in open("docs/results/sample104.jsonl") if '"notes"' in l}
rng.shuffle(pids)
EDU_Q = ["What's the highest schooling the chart records for {p}?", "How much education does {p} have, going by the notes?",
         "Did {p} go to college, according to the notes? What level of schooling is written there?"]
SOC_Q = ["What income bracket do the notes put {p} in?", "How is {p}'s economic status described in the chart?",
         "What social class does the documentation say {p} comes from: low, middle or high?"]
CC_Q = ["What brought {p} in on {d}?", "Why did {p} come in on {d}, what were the complaints?",
        "What problems did {p} present with at the {d} appointment?", "On {d}, what did {p} say was bothering them?"]
INS_Q = ["What insurance does the most recent note say {p} has?", "Per the latest clinical note, how is {p} insured?"]
YN_Q = ["Did {p} ever complain of {x}, per the notes?", "Is {x} ever listed among {p}'s complaints in the notes?"]
INS = re.compile(r"Patient currently has (.+?)\.", re.I)
out, counts = [], {"edu": 0, "soc": 0, "cc": 0, "ins": 0, "yn": 0}
want = {"edu": 6, "soc": 6, "cc": 8, "ins": 4, "yn": 6}
all_cc = set()
recs = []
for pid in pids:
    res = list(store.search_all("Patient", {"_id": pid})) + [r for t in ("DocumentReference", "DiagnosticReport") for r in store.search_all(t, {"patient": pid, "_count": "1000"})]
    rec = PatientRecord.from_resources(res)
    notes = [(d, n, note_text(n)) for n in rec.of("DocumentReference") if (d := clinical_day(n))]
    notes = [(d, n, t) for d, n, t in notes if t]
    if notes:
        recs.append((pid, rec, notes))
        for d, n, t in notes:
            all_cc |= set(_facts(t).get("complaints") or [])
for pid, rec, notes in recs:
    if pid in used:
        continue
    sex = (rec.patient.get("gender") or "")
    p = rng.choice(["the patient", "her" if sex == "female" else "him"]) if False else ("she" if sex == "female" else "he")
    who = "the patient"
    facts = [(d, n, _facts(t), t) for d, n, t in notes]
    twins = _report_twins(rec)
    refs = lambda docs: [r for d in docs for r in (ref(d), twins.get(d["id"])) if r]
    kinds = list(want); rng.shuffle(kinds)
    for k in kinds:
        if counts[k] >= want[k]:
            continue
        if k in ("edu", "soc"):
            key = "education" if k == "edu" else "socio"
            stated = [(n, f[key]) for _, n, f, _ in facts if key in f]
            vals = set().union(*(v for _, v in stated)) if stated else set()
            if len(vals) != 1:
                continue
            q = rng.choice(EDU_Q if k == "edu" else SOC_Q).format(p=who)
            out.append(make_task("notes", pid, q, ChoiceGold(value=vals.pop(), options=EDUCATION_OPTIONS if k == "edu" else SOCIO_OPTIONS),
                                 refs([n for n, _ in stated]), meta={"op": key, "source": "handwritten-s20"}, refs_mode="any"))
        elif k == "cc":
            cc = [(d, n, f["complaints"]) for d, n, f, _ in facts if f.get("complaints")]
            if not cc:
                continue
            d, n, items = rng.choice(cc)
            if any(f.get("complaints") != items for dd, _, f, _ in facts if dd == d):
                continue
            q = rng.choice(CC_Q).format(p=who, d=d)
            out.append(make_task("notes", pid, q, SetGold(items=sorted(set(items))), refs([x for dd, x, _, _ in facts if dd == d]),
                                 meta={"op": "complaint", "day": d, "source": "handwritten-s20"}, refs_mode="any"))
        elif k == "ins":
            last = max(facts, key=lambda x: x[0])
            m = INS.search(" ".join(last[3].split()))
            if not m or sum(1 for x in facts if x[0] == last[0]) > 1:
                continue
            q = rng.choice(INS_Q).format(p=who)
            val = m.group(1).strip()
            out.append(make_task("notes", pid, q, TextGold(value=val), refs([last[1]]), meta={"op": "insurance", "source": "handwritten-s20"}, refs_mode="any"))
        elif k == "yn":
            mine = set().union(*[set(f.get("complaints") or []) for _, _, f, _ in facts])
            yes = rng.random() < 0.5
            pool = sorted(mine) if yes else sorted(all_cc - mine)
            if not pool:
                continue
            x = rng.choice(pool)
            q = rng.choice(YN_Q).format(p=who, x=x.lower())
            out.append(make_task("notes", pid, q, YesNoGold(value=yes), [], meta={"op": "complaint_ever", "source": "handwritten-s20"}, refs_mode="any"))
        counts[k] += 1
        break
    if all(counts[k] >= want[k] for k in want):
        break
for t in out:
    print(t.model_dump_json())
print(counts, file=sys.stderr)
