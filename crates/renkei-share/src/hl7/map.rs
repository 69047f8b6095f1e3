//! HL7 v2.5 messages as JAHIS and SS-MIX2 define them, mapped to FHIR R4 JSON with JP Core
//! code systems. Pure functions: no store, no policy (the importer in [`super`] resolves the
//! facility and the patient first and passes them in a [`Context`]).
//!
//! | message (SS-MIX2 data type)                  | segments read                | resource |
//! |----------------------------------------------|------------------------------|----------|
//! | ORU^R01 (OMG-13), OUL^R22 (OML-11, JAHIS 臨床検査データ交換規約 Ver.4) | SPM, ORC, OBR, OBX, NTE | one Observation per OBX |
//! | RDE^O11 (OMP-01/02, JAHIS 処方データ交換規約 Ver.3) | ORC, RXE, TQ1, RXR, NTE | one MedicationRequest per RXE |
//! | PPR^ZD1 (PPR-01, JAHIS 病名(歴)情報データ交換規約 Ver.3) | PRB | one Condition per PRB |
//! | ADT^A08 (ADT-00)                             | PID                          | Patient (not stored: see [`super`]) |
//!
//! Code systems (JP Core's OID forms; HL7 v2 coding-system names of JAHIS on the left):
//! `JC10` JLAC10 17 digits `urn:oid:1.2.392.200119.4.504`; `LN` LOINC; `HOT`/`HOT9`
//! `urn:oid:1.2.392.200119.4.403.1`, `HOT7` `…403.2`, `HOT13` `…402.1` (a bare `HOT` code
//! is told by its length); `YJ` `urn:oid:1.2.392.100495.20.2.73`; `MDCDX2` MEDIS 病名交換用
//! コード `urn:oid:1.2.392.200119.4.101.6`; `I10` ICD-10 (MHLW 2013)
//! `http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full`; `MR9P` MERIT-9 units
//! `urn:oid:1.2.392.100495.20.2.101`; `JAMISDP01` JAMI 用法コード 16桁
//! `urn:oid:1.2.392.200250.2.2.20.20`; `HL7nnnn` `http://terminology.hl7.org/CodeSystem/v2-nnnn`;
//! `UCUM`. Local tables (`99…`, or none) become `urn:renkei:local:<facility>[:<name>]`,
//! any other table `urn:renkei:hl7-table:<name>`.
//!
//! Times without a UTC offset are Japan time (+09:00), as JAHIS messages write them.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::parse::{Location, Message, Rep, Segment};

pub use crate::clinical::REGIONAL_ID_SYSTEM;
/// JP Core: patient IDs of a medical institution, followed by its 10-digit code.
const JP_LOCAL_ID_OID: &str = "urn:oid:1.2.392.100495.20.3.51.1";
/// Local IDs of any other issuer.
const ISSUER_SYSTEM: &str = "urn:renkei:issuer:";
/// JP Core: 医療機関コード.
const JP_FACILITY_ID: &str = "urn:oid:1.2.392.100495.20.3.23";
/// ISO 21090 name representation (JP Core: IDE kanji, SYL kana, ABC alphabetic).
const EN_REPRESENTATION: &str =
    "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation";
const UCUM: &str = "http://unitsofmeasure.org";
const JLAC10: &str = "urn:oid:1.2.392.200119.4.504";

/// How serious an issue is (HL7 v2.5 ERR-4, table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    /// E: the message (or part of it) was not processed.
    #[serde(rename = "E")]
    Error,
    /// W: processed, with something the sender should know.
    #[serde(rename = "W")]
    Warning,
    /// I: information.
    #[serde(rename = "I")]
    Information,
}

impl Severity {
    /// The table 0516 code.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
        }
    }
}

/// One finding about a message, reported as an ERR segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Where (ERR-2).
    pub location: Location,
    /// HL7 table 0357 code (ERR-3).
    pub code: u16,
    /// ERR-4.
    pub severity: Severity,
    /// What, for a person (ERR-8).
    pub text: String,
}

impl Issue {
    /// An error.
    pub fn error(location: Location, code: u16, text: impl Into<String>) -> Issue {
        Issue {
            location,
            code,
            severity: Severity::Error,
            text: text.into(),
        }
    }

    /// A warning.
    pub fn warning(location: Location, code: u16, text: impl Into<String>) -> Issue {
        Issue {
            location,
            code,
            severity: Severity::Warning,
            text: text.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.text)
    }
}

/// The text of HL7 table 0357 codes used here.
pub fn error_code_text(code: u16) -> &'static str {
    match code {
        0 => "Message accepted",
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        205 => "Duplicate key identifier",
        206 => "Application record locked",
        _ => "Application internal error",
    }
}

/// What a message is, for the importer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ORU^R01, OUL^R22: laboratory results → Observation.
    LabResults,
    /// RDE^O11: prescription → MedicationRequest.
    Prescription,
    /// ADT^A08: patient information update → Patient.
    PatientUpdate,
    /// PPR^ZD1: problems (diagnoses) → Condition.
    Problems,
}

impl Kind {
    /// The kind of `code^trigger` (MSH-9), or the issue for an AR (200/201).
    pub fn of(code: &str, trigger: &str) -> Result<Kind, Issue> {
        let at = Location::component("MSH", 1, 9, 1);
        match (code, trigger) {
            ("ORU", "R01") | ("OUL", "R22") => Ok(Kind::LabResults),
            ("RDE", "O11") => Ok(Kind::Prescription),
            ("ADT", "A08") => Ok(Kind::PatientUpdate),
            ("PPR", "ZD1") => Ok(Kind::Problems),
            ("ORU" | "OUL" | "RDE" | "ADT" | "PPR", t) => Err(Issue::error(
                Location::component("MSH", 1, 9, 2),
                201,
                format!(
                    "event {code}^{t} is not imported (ORU^R01, OUL^R22, RDE^O11, ADT^A08, PPR^ZD1 are)"
                ),
            )),
            (c, _) => Err(Issue::error(
                at,
                200,
                format!(
                    "message type {c} is not imported (ORU^R01, OUL^R22, RDE^O11, ADT^A08, PPR^ZD1 are)"
                ),
            )),
        }
    }
}

/// Who the resources are about and who records them.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The sending facility's code.
    pub facility: &'a str,
    /// Its name.
    pub facility_name: &'a str,
    /// The regional patient ID.
    pub patient: &'a str,
    /// MSH-10 (identifiers of results that carry no order number).
    pub control_id: &'a str,
}

impl Context<'_> {
    fn subject(&self) -> Value {
        json!({"reference": format!("Patient/{}", self.patient)})
    }

    fn organization(&self) -> Value {
        let jp = self.facility.len() == 10 && self.facility.bytes().all(|b| b.is_ascii_digit());
        let system = if jp {
            JP_FACILITY_ID.to_string()
        } else {
            "urn:renkei:facility".to_string()
        };
        json!({"type": "Organization", "identifier": {"system": system, "value": self.facility},
               "display": self.facility_name})
    }

    fn identifier(&self, kind: &str, value: &str) -> Value {
        json!({"system": format!("urn:renkei:hl7:{}:{kind}", self.facility), "value": value})
    }
}

/// The local patient ID of PID-3 (HL7 v2.5 §3.4.2.3, CX): the repetition whose identifier
/// type (CX.5) is `PI`, else the first one with an ID; with its assigning authority (CX.4).
pub fn local_id(pid: &Segment) -> Result<(String, String), Issue> {
    let reps = pid.reps(3);
    let pick = reps
        .iter()
        .find(|r| r.component(5) == "PI" && !r.component(1).is_empty())
        .or_else(|| reps.iter().find(|r| !r.component(1).is_empty()));
    match pick {
        Some(r) => Ok((r.component(1), r.component(4))),
        None => Err(Issue::error(
            pid.at(3),
            101,
            "PID-3 patient identifier list has no patient ID",
        )),
    }
}

/// Who PID says the patient is, for a consistency check against the regional record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demographics {
    /// Family name in kanji (or the first name given).
    pub family: String,
    /// Given name in kanji.
    pub given: String,
    /// Family name in kana.
    pub family_kana: String,
    /// Given name in kana.
    pub given_kana: String,
    /// YYYY-MM-DD, or empty.
    pub birth_date: String,
    /// male | female | other | unknown, or empty.
    pub sex: String,
}

/// PID-5 (XPN, JAHIS: kanji with XPN.8 `I`, kana with `P`), PID-7, PID-8.
pub fn demographics(pid: &Segment) -> Result<Demographics, Issue> {
    let mut d = Demographics::default();
    for r in pid.reps(5) {
        let (family, given) = (r.sub(1, 1), r.component(2));
        match r.component(8).as_str() {
            "P" => {
                d.family_kana = family;
                d.given_kana = given;
            }
            _ if d.family.is_empty() && d.given.is_empty() => {
                d.family = family;
                d.given = given;
            }
            _ => {}
        }
    }
    let birth = pid.value(7);
    if !birth.is_empty() {
        d.birth_date = fhir_date(&birth).ok_or_else(|| {
            Issue::error(
                pid.at(7),
                102,
                format!("PID-7 birth date {birth:?} is not YYYYMMDD"),
            )
        })?;
    }
    d.sex = match pid.value(8).as_str() {
        "M" => "male",
        "F" => "female",
        "O" | "A" => "other",
        "U" | "N" => "unknown",
        "" => "",
        s => {
            return Err(Issue::error(
                pid.at(8),
                103,
                format!("PID-8 sex {s:?} is not in HL7 table 0001 (M, F, O, U, A, N)"),
            ))
        }
    }
    .to_string();
    Ok(d)
}

/// A resource and the segment it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The segment (OBX, RXE, PRB, PID).
    pub source: Location,
    /// The FHIR resource.
    pub resource: Value,
}

/// Map a message of `kind` to the resources to create (for ADT^A08 the Patient, see
/// [`patient_update`]). Every issue found is returned, not only the first.
pub fn map(kind: Kind, msg: &Message, ctx: &Context<'_>) -> Result<Vec<Mapped>, Vec<Issue>> {
    match kind {
        Kind::LabResults => lab_results(msg, ctx),
        Kind::Prescription => prescriptions(msg, ctx),
        Kind::Problems => problems(msg, ctx),
        Kind::PatientUpdate => patient_update(msg, ctx).map(|p| {
            vec![Mapped {
                source: Location::segment("PID", 1),
                resource: p,
            }]
        }),
    }
}

/// One value or the issues of all the fields that failed.
struct Collect {
    issues: Vec<Issue>,
}

impl Collect {
    fn take<T>(&mut self, r: Result<T, Issue>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(i) => {
                self.issues.push(i);
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Laboratory results: ORU^R01 (HL7 v2.5 §7.3.1), OUL^R22 (§7.3.6; JAHIS 臨床検査データ交換
// 規約 Ver.4.0: SPM, ORC, OBR, {OBX})

fn lab_results(msg: &Message, ctx: &Context<'_>) -> Result<Vec<Mapped>, Vec<Issue>> {
    let mut out: Vec<Mapped> = Vec::new();
    let mut c = Collect { issues: Vec::new() };
    let (mut spm, mut orc, mut obr): (Option<&Segment>, Option<&Segment>, Option<&Segment>) =
        (None, None, None);
    let mut last: Option<usize> = None;
    for seg in &msg.segments {
        match seg.id.as_str() {
            "SPM" => {
                spm = Some(seg);
                obr = None;
                last = None;
            }
            "ORC" => orc = Some(seg),
            "OBR" => {
                obr = Some(seg);
                last = None;
            }
            "OBX" => {
                last = None;
                if let Some(o) = c.take(observation(seg, spm, orc, obr, ctx)) {
                    out.push(Mapped {
                        source: Location::segment("OBX", seg.sequence),
                        resource: o,
                    });
                    last = Some(out.len() - 1);
                }
            }
            "NTE" => {
                if let Some(i) = last {
                    add_note(&mut out[i].resource, seg);
                }
            }
            _ => {}
        }
    }
    if out.is_empty() && c.issues.is_empty() {
        c.issues.push(Issue::error(
            Location::segment("OBX", 0),
            100,
            "no OBX segment: the message holds no result to record",
        ));
    }
    if c.issues.is_empty() {
        Ok(out)
    } else {
        Err(c.issues)
    }
}

fn add_note(resource: &mut Value, nte: &Segment) {
    let text = nte
        .reps(3)
        .iter()
        .map(|r| r.text())
        .collect::<Vec<_>>()
        .join("\n");
    if text.trim().is_empty() {
        return;
    }
    if let Some(obj) = resource.as_object_mut() {
        let notes = obj.entry("note").or_insert_with(|| json!([]));
        if let Some(a) = notes.as_array_mut() {
            a.push(json!({"text": text}));
        }
    }
}

fn observation(
    obx: &Segment,
    spm: Option<&Segment>,
    orc: Option<&Segment>,
    obr: Option<&Segment>,
    ctx: &Context<'_>,
) -> Result<Value, Issue> {
    let code = codeable(obx.rep(3), ctx)
        .ok_or_else(|| Issue::error(obx.at(3), 101, "OBX-3 observation identifier is empty"))?;
    let status = match obx.value(11).as_str() {
        "F" => "final",
        "C" => "corrected",
        "P" | "R" | "S" => "preliminary",
        "I" | "O" => "registered",
        "A" => "amended",
        "X" => "cancelled",
        "" | "N" | "U" => "unknown",
        s @ ("D" | "W") => {
            return Err(Issue::error(
                obx.at(11),
                207,
                format!("OBX-11 result status {s} (deletion/wrong) is not imported: the shared record is create-only; correct it through the FHIR API"),
            ))
        }
        s => {
            return Err(Issue::error(
                obx.at(11),
                103,
                format!("OBX-11 result status {s:?} is not in HL7 table 0085"),
            ))
        }
    };
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("Observation"));
    let order = obr
        .map(|o| {
            let filler = o.value(3);
            if filler.is_empty() {
                o.value(2)
            } else {
                filler
            }
        })
        .filter(|s| !s.is_empty())
        .or_else(|| orc.map(|o| o.value(2)).filter(|s| !s.is_empty()));
    let code_key = {
        let c = obx.rep(3);
        if c.component(1).is_empty() {
            c.component(4)
        } else {
            c.component(1)
        }
    };
    let sub_id = obx.value(4);
    let id_value = match order {
        Some(o) if sub_id.is_empty() => format!("{o}|{code_key}"),
        Some(o) => format!("{o}|{code_key}|{sub_id}"),
        None => format!("{}|{}", ctx.control_id, obx.value(1)),
    };
    r.insert(
        "identifier".into(),
        json!([ctx.identifier("result", &id_value)]),
    );
    r.insert("status".into(), json!(status));
    r.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory", "display": "Laboratory"}]}]),
    );
    r.insert("code".into(), code);
    r.insert("subject".into(), ctx.subject());
    // effective: OBX-14, else the collection time (OBR-7, SPM-17)
    let candidates = [(Some(obx), 14usize), (obr, 7), (spm, 17)];
    for (seg, field) in candidates {
        let Some(seg) = seg else { continue };
        let v = seg.value(field);
        if v.is_empty() {
            continue;
        }
        let dt = fhir_datetime(&v).ok_or_else(|| {
            Issue::error(
                seg.at(field),
                102,
                format!("{}-{field} {v:?} is not an HL7 date/time", seg.id),
            )
        })?;
        r.insert("effectiveDateTime".into(), json!(dt));
        break;
    }
    if let Some(obr) = obr {
        let v = obr.value(22);
        if let Some(i) = fhir_instant(&v) {
            r.insert("issued".into(), json!(i));
        }
    }
    r.insert("performer".into(), json!([ctx.organization()]));
    let vt = obx.value(2).to_ascii_uppercase();
    let v = obx.rep(5);
    if v.is_empty() {
        let reason = if status == "cancelled" {
            "not-performed"
        } else {
            "unknown"
        };
        r.insert(
            "dataAbsentReason".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": reason}]}),
        );
    } else {
        let (key, value) = value_of(&vt, obx, v, ctx)?;
        r.insert(key.into(), value);
    }
    let range = obx.rep(7).text();
    if !range.trim().is_empty() {
        r.insert(
            "referenceRange".into(),
            json!([reference_range(range.trim(), &unit_of(obx.rep(6)))]),
        );
    }
    let flags: Vec<Value> = obx
        .reps(8)
        .iter()
        .filter(|f| !f.is_empty())
        .map(|f| interpretation(&f.component(1)))
        .collect();
    if !flags.is_empty() {
        r.insert("interpretation".into(), Value::Array(flags));
    }
    if let Some(m) = codeable(obx.rep(17), ctx) {
        r.insert("method".into(), m);
    }
    Ok(Value::Object(r))
}

/// (value[x] key, value) of OBX-5 by OBX-2.
fn value_of(
    vt: &str,
    obx: &Segment,
    v: Rep<'_>,
    ctx: &Context<'_>,
) -> Result<(&'static str, Value), Issue> {
    let at = obx.at(5);
    Ok(match vt {
        "NM" => {
            let text = v.component(1);
            let (cmp, n) = number_with_comparator(&text).ok_or_else(|| {
                Issue::error(at, 102, format!("OBX-5 value {text:?} is not a number (OBX-2 is NM)"))
            })?;
            let mut q = quantity(n, &unit_of(obx.rep(6)));
            if let Some(c) = cmp {
                q["comparator"] = json!(c);
            }
            ("valueQuantity", q)
        }
        "SN" => structured_numeric(v, &unit_of(obx.rep(6)))
            .ok_or_else(|| Issue::error(at, 102, format!("OBX-5 value {:?} is not a structured numeric (comparator^number^separator^number)", v.text())))?,
        "ST" | "TX" | "FT" => ("valueString", json!(v.text())),
        "CE" | "CWE" | "CNE" => (
            "valueCodeableConcept",
            codeable(v, ctx).unwrap_or_else(|| json!({"text": v.text()})),
        ),
        "DT" | "DTM" | "TS" => {
            let t = v.component(1);
            let dt = fhir_datetime(&t)
                .ok_or_else(|| Issue::error(at, 102, format!("OBX-5 value {t:?} is not an HL7 date/time")))?;
            ("valueDateTime", json!(dt))
        }
        "" => return Err(Issue::error(obx.at(2), 101, "OBX-2 value type is empty but OBX-5 has a value")),
        other => {
            return Err(Issue::error(
                obx.at(2),
                102,
                format!("OBX-2 value type {other} is not imported (NM, SN, ST, TX, FT, CE, CWE, CNE, DT, DTM, TS are)"),
            ))
        }
    })
}

/// A unit (OBX-6, CWE): (code, display, coding system name).
#[derive(Debug, Clone, Default)]
struct Unit {
    code: String,
    display: String,
    system: String,
}

fn unit_of(r: Rep<'_>) -> Unit {
    Unit {
        code: r.component(1),
        display: r.component(2),
        system: r.component(3),
    }
}

fn quantity(value: f64, unit: &Unit) -> Value {
    let mut q = json!({"value": value});
    let shown = if unit.display.is_empty() {
        &unit.code
    } else {
        &unit.display
    };
    if !shown.is_empty() {
        q["unit"] = json!(shown);
    }
    let system = match unit.system.to_ascii_uppercase().as_str() {
        "UCUM" => Some(UCUM.to_string()),
        "MR9P" => Some(MERIT9.to_string()),
        _ => None,
    };
    if let (Some(s), false) = (system, unit.code.is_empty()) {
        q["system"] = json!(s);
        q["code"] = json!(unit.code);
    }
    q
}

/// A decimal, with full-width digits (１２．５) read as ASCII.
fn number(text: &str) -> Option<f64> {
    let t: String = text
        .trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            '．' => '.',
            '－' | '−' => '-',
            '＋' => '+',
            c => c,
        })
        .collect();
    let body = t.strip_prefix(['+', '-']).unwrap_or(&t);
    let ok = !body.is_empty()
        && body.chars().all(|c| c.is_ascii_digit() || c == '.')
        && body.chars().filter(|&c| c == '.').count() <= 1
        && body.chars().any(|c| c.is_ascii_digit());
    if ok {
        t.parse().ok()
    } else {
        None
    }
}

/// `<0.5`, `>=100` in an NM field (not allowed by HL7, common in practice) or a number.
fn number_with_comparator(text: &str) -> Option<(Option<&'static str>, f64)> {
    let t = text.trim();
    for c in ["<=", ">=", "<", ">"] {
        if let Some(rest) = t.strip_prefix(c) {
            return number(rest).map(|n| (Some(c), n));
        }
    }
    number(t).map(|n| (None, n))
}

/// SN (HL7 v2.5 §2.A.73): comparator^num1^separator/suffix^num2.
fn structured_numeric(v: Rep<'_>, unit: &Unit) -> Option<(&'static str, Value)> {
    let (cmp, n1, sep, n2) = (
        v.component(1),
        v.component(2),
        v.component(3),
        v.component(4),
    );
    let a = number(&n1)?;
    match (sep.as_str(), n2.is_empty()) {
        ("", true) => {
            let mut q = quantity(a, unit);
            match cmp.as_str() {
                "" | "=" => {}
                c @ ("<" | ">" | "<=" | ">=") => q["comparator"] = json!(c),
                _ => return None,
            }
            Some(("valueQuantity", q))
        }
        ("-", false) => Some((
            "valueRange",
            json!({"low": quantity(a, unit), "high": quantity(number(&n2)?, unit)}),
        )),
        (":" | "/", false) => Some((
            "valueRatio",
            json!({"numerator": {"value": a}, "denominator": {"value": number(&n2)?}}),
        )),
        ("+", true) => Some(("valueString", json!(format!("{n1}+")))),
        _ => None,
    }
}

/// OBX-7: `4.6-6.2`, `<0.5`, `>=10`, or free text.
fn reference_range(text: &str, unit: &Unit) -> Value {
    let mut r = json!({"text": text});
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("<=").or_else(|| t.strip_prefix('<')) {
        if let Some(h) = number(rest) {
            r["high"] = quantity(h, unit);
        }
        return r;
    }
    if let Some(rest) = t.strip_prefix(">=").or_else(|| t.strip_prefix('>')) {
        if let Some(l) = number(rest) {
            r["low"] = quantity(l, unit);
        }
        return r;
    }
    // low-high: the first '-' after the first character (a negative low keeps its sign)
    let split = t
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == '-' || c == '~' || c == '－' || c == '～')
        .map(|(i, c)| (&t[..i], &t[i + c.len_utf8()..]));
    if let Some((lo, hi)) = split {
        if let (Some(l), Some(h)) = (number(lo), number(hi)) {
            r["low"] = quantity(l, unit);
            r["high"] = quantity(h, unit);
        }
    }
    r
}

/// OBX-8 (HL7 table 0078) → v3 ObservationInterpretation (the codes are the same).
fn interpretation(flag: &str) -> Value {
    const KNOWN: &[(&str, &str)] = &[
        ("L", "Low"),
        ("H", "High"),
        ("LL", "Critical low"),
        ("HH", "Critical high"),
        ("<", "Off scale low"),
        (">", "Off scale high"),
        ("N", "Normal"),
        ("A", "Abnormal"),
        ("AA", "Critical abnormal"),
        ("U", "Significant change up"),
        ("D", "Significant change down"),
        ("B", "Better"),
        ("W", "Worse"),
        ("S", "Susceptible"),
        ("R", "Resistant"),
        ("I", "Intermediate"),
        ("NEG", "Negative"),
        ("POS", "Positive"),
        ("IND", "Indeterminate"),
        ("DET", "Detected"),
        ("ND", "Not detected"),
    ];
    match KNOWN.iter().find(|(c, _)| *c == flag) {
        Some((c, d)) => json!({"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
            "code": c, "display": d}]}),
        None => json!({"text": flag}),
    }
}

// ---------------------------------------------------------------------------------------
// Prescriptions: RDE^O11 (HL7 v2.5 §4.8.4; JAHIS 処方データ交換規約 Ver.3.0C: ORC, RXE, TQ1,
// RXR per RP)

const MERIT9: &str = "urn:oid:1.2.392.100495.20.2.101";

struct Item<'m> {
    orc: Option<&'m Segment>,
    /// Index of this RXE among its ORC's.
    ordinal: usize,
    rxe: &'m Segment,
    tq1: Vec<&'m Segment>,
    /// Timing given before the RXE (the ORC's): used when the RXE has none of its own.
    orc_tq1: Vec<&'m Segment>,
    rxr: Vec<&'m Segment>,
    nte: Vec<&'m Segment>,
}

fn prescriptions(msg: &Message, ctx: &Context<'_>) -> Result<Vec<Mapped>, Vec<Issue>> {
    let mut items: Vec<Item<'_>> = Vec::new();
    let mut orc: Option<&Segment> = None;
    let mut orc_timing: Vec<&Segment> = Vec::new();
    let mut in_item = false;
    let mut ordinal = 0;
    for seg in &msg.segments {
        match seg.id.as_str() {
            "ORC" => {
                orc = Some(seg);
                orc_timing.clear();
                in_item = false;
                ordinal = 0;
            }
            "RXE" => {
                ordinal += 1;
                items.push(Item {
                    orc,
                    ordinal,
                    rxe: seg,
                    tq1: Vec::new(),
                    orc_tq1: orc_timing.clone(),
                    rxr: Vec::new(),
                    nte: Vec::new(),
                });
                in_item = true;
            }
            "TQ1" if in_item => {
                if let Some(i) = items.last_mut() {
                    i.tq1.push(seg);
                }
            }
            "TQ1" => orc_timing.push(seg),
            "RXR" if in_item => {
                if let Some(i) = items.last_mut() {
                    i.rxr.push(seg);
                }
            }
            "NTE" if in_item => {
                if let Some(i) = items.last_mut() {
                    i.nte.push(seg);
                }
            }
            _ => {}
        }
    }
    if items.is_empty() {
        return Err(vec![Issue::error(
            Location::segment("RXE", 0),
            100,
            "no RXE segment: the message holds no prescription to record",
        )]);
    }
    let mut c = Collect { issues: Vec::new() };
    let out: Vec<Mapped> = items
        .iter()
        .filter_map(|i| {
            c.take(medication_request(i, ctx)).map(|resource| Mapped {
                source: Location::segment("RXE", i.rxe.sequence),
                resource,
            })
        })
        .collect();
    if c.issues.is_empty() {
        Ok(out)
    } else {
        Err(c.issues)
    }
}

fn medication_request(item: &Item<'_>, ctx: &Context<'_>) -> Result<Value, Issue> {
    let rxe = item.rxe;
    let Some(orc) = item.orc else {
        return Err(Issue::error(
            Location::segment("ORC", 0),
            100,
            format!(
                "RXE[{}] has no ORC before it (RDE^O11: ORC, RXE, TQ1, RXR)",
                rxe.sequence
            ),
        ));
    };
    match orc.value(1).as_str() {
        "NW" | "" => {}
        other => {
            return Err(Issue::error(
                orc.at(1),
                207,
                format!("ORC-1 order control {other} is not imported (only NW, new orders): the shared record is create-only; change or stop the MedicationRequest through the FHIR API"),
            ))
        }
    }
    let mut medication = codeable(rxe.rep(2), ctx)
        .ok_or_else(|| Issue::error(rxe.at(2), 101, "RXE-2 give code (the drug) is empty"))?;
    // RXE-31 supplementary codes (SS-MIX2: the YJ code beside the HOT code)
    for r in rxe.reps(31) {
        if let Some(extra) = codeable(r, ctx) {
            if let (Some(all), Some(more)) = (
                medication["coding"].as_array_mut(),
                extra["coding"].as_array(),
            ) {
                all.extend(more.iter().cloned());
            }
        }
    }
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("MedicationRequest"));
    let order_no = orc.value(2);
    let group = orc.value(4);
    let base = if group.is_empty() { &order_no } else { &group };
    let base = if base.is_empty() {
        ctx.control_id
    } else {
        base.as_str()
    };
    r.insert(
        "identifier".into(),
        json!([ctx.identifier("order", &format!("{base}|{}", item.ordinal))]),
    );
    r.insert("status".into(), json!("active"));
    r.insert("intent".into(), json!("order"));
    if let Some(cat) = codeable(rxe.rep(27), ctx) {
        r.insert("category".into(), json!([cat]));
    }
    r.insert("medicationCodeableConcept".into(), medication);
    r.insert("subject".into(), ctx.subject());
    let authored = orc.value(9);
    if !authored.is_empty() {
        let dt = fhir_datetime(&authored).ok_or_else(|| {
            Issue::error(
                orc.at(9),
                102,
                format!("ORC-9 date/time of transaction {authored:?} is not an HL7 date/time"),
            )
        })?;
        r.insert("authoredOn".into(), json!(dt));
    }
    if let Some(who) = person(orc, 12) {
        r.insert("requester".into(), who);
    }
    if !order_no.is_empty() {
        r.insert("groupIdentifier".into(), ctx.identifier("order", &order_no));
    }
    // the dosage
    let mut dosage = Map::new();
    let tq1 = item.tq1.first().or(item.orc_tq1.first()).copied();
    let mut timing = Map::new();
    let mut repeat = Map::new();
    let mut duration: Option<(f64, &'static str, &'static str)> = None;
    if let Some(tq1) = tq1 {
        let usage = tq1.rep(3).subs(1);
        if usage.iter().any(|s| !s.is_empty()) {
            if let Some(code) = codeable_parts(&usage, ctx) {
                if let Some(t) = code.get("text").and_then(Value::as_str) {
                    dosage.insert("text".into(), json!(t));
                }
                timing.insert("code".into(), code);
            }
        }
        let qty = tq1.rep(6);
        if !qty.is_empty() {
            let n = number(&qty.component(1)).ok_or_else(|| {
                Issue::error(
                    tq1.at(6),
                    102,
                    format!(
                        "TQ1-6 service duration {:?} is not a number",
                        qty.component(1)
                    ),
                )
            })?;
            duration = ucum_time(&qty.sub(2, 1)).map(|(code, unit)| (n, code, unit));
            if duration.is_none() {
                return Err(Issue::error(
                    Location::component("TQ1", tq1.sequence, 6, 2),
                    103,
                    format!(
                        "TQ1-6 duration unit {:?} is not a time unit (D, W, M, Y, H, MIN, S)",
                        qty.sub(2, 1)
                    ),
                ));
            }
        }
        let start = tq1.value(7);
        if !start.is_empty() {
            let s = fhir_datetime(&start).ok_or_else(|| {
                Issue::error(
                    tq1.at(7),
                    102,
                    format!("TQ1-7 start date/time {start:?} is not an HL7 date/time"),
                )
            })?;
            let mut period = json!({"start": s});
            let end = tq1.value(8);
            if !end.is_empty() {
                let e = fhir_datetime(&end).ok_or_else(|| {
                    Issue::error(
                        tq1.at(8),
                        102,
                        format!("TQ1-8 end date/time {end:?} is not an HL7 date/time"),
                    )
                })?;
                period["end"] = json!(e);
            } else if let Some((n, code, _)) = duration {
                // the last day of a course of n days (or weeks) from its start
                let days = match code {
                    "d" => Some(n),
                    "wk" => Some(n * 7.0),
                    _ => None,
                };
                if let (Some(days), Some(date)) = (days, fhir_date(&start)) {
                    if days >= 1.0 && days.fract() == 0.0 {
                        if let Some(e) = add_days(&date, days as i64 - 1) {
                            period["end"] = json!(e);
                        }
                    }
                }
            }
            repeat.insert("boundsPeriod".into(), period);
        } else if let Some((n, code, unit)) = duration {
            repeat.insert(
                "boundsDuration".into(),
                json!({"value": n, "unit": unit, "system": UCUM, "code": code}),
            );
        }
        let count = tq1.value(14);
        if !count.is_empty() {
            match count.parse::<u32>() {
                Ok(n) => {
                    repeat.insert("count".into(), json!(n));
                }
                Err(_) => {
                    return Err(Issue::error(
                        tq1.at(14),
                        102,
                        format!("TQ1-14 total occurrences {count:?} is not a whole number"),
                    ))
                }
            }
        }
        let text = tq1.rep(11).text();
        if !text.trim().is_empty() {
            dosage.insert("patientInstruction".into(), json!(text.trim()));
        }
    }
    if !repeat.is_empty() {
        timing.insert("repeat".into(), Value::Object(repeat));
    }
    if !timing.is_empty() {
        dosage.insert("timing".into(), Value::Object(timing));
    }
    if let Some(instr) = codeable(rxe.rep(7), ctx) {
        dosage.insert("additionalInstruction".into(), json!([instr]));
    }
    if let Some(rxr) = item.rxr.first() {
        if let Some(route) = codeable(rxr.rep(1), ctx) {
            dosage.insert("route".into(), route);
        }
        if let Some(site) = codeable(rxr.rep(2), ctx) {
            dosage.insert("site".into(), site);
        }
    }
    let dose = rxe.value(3);
    if !dose.is_empty() {
        let n = number(&dose).ok_or_else(|| {
            Issue::error(
                rxe.at(3),
                102,
                format!("RXE-3 give amount {dose:?} is not a number"),
            )
        })?;
        dosage.insert(
            "doseAndRate".into(),
            json!([{"doseQuantity": quantity(n, &unit_of(rxe.rep(5)))}]),
        );
    }
    if !dosage.is_empty() {
        r.insert("dosageInstruction".into(), json!([Value::Object(dosage)]));
    }
    let mut dispense = Map::new();
    let amount = rxe.value(10);
    if !amount.is_empty() {
        let n = number(&amount).ok_or_else(|| {
            Issue::error(
                rxe.at(10),
                102,
                format!("RXE-10 dispense amount {amount:?} is not a number"),
            )
        })?;
        dispense.insert("quantity".into(), quantity(n, &unit_of(rxe.rep(11))));
    }
    if let Some((n, code, unit)) = duration {
        dispense.insert(
            "expectedSupplyDuration".into(),
            json!({"value": n, "unit": unit, "system": UCUM, "code": code}),
        );
    }
    if !dispense.is_empty() {
        r.insert("dispenseRequest".into(), Value::Object(dispense));
    }
    let notes: Vec<Value> = item
        .nte
        .iter()
        .map(|n| n.rep(3).text())
        .filter(|t| !t.trim().is_empty())
        .map(|t| json!({"text": t}))
        .collect();
    if !notes.is_empty() {
        r.insert("note".into(), Value::Array(notes));
    }
    Ok(Value::Object(r))
}

/// TQ1-6 units (HL7 v2.5 CQ units; JAHIS `D&日&ISO+`) as (UCUM code, unit shown).
fn ucum_time(unit: &str) -> Option<(&'static str, &'static str)> {
    Some(match unit.to_ascii_uppercase().as_str() {
        "D" | "DAY" | "DAYS" | "日" => ("d", "日"),
        "W" | "WK" | "WEEK" | "週" => ("wk", "週"),
        "M" | "MO" | "MONTH" | "月" => ("mo", "月"),
        "Y" | "A" | "YEAR" | "年" => ("a", "年"),
        "H" | "HR" | "HOUR" | "時間" => ("h", "時間"),
        "MIN" | "分" => ("min", "分"),
        "S" | "SEC" | "秒" => ("s", "秒"),
        _ => return None,
    })
}

/// A person of an XCN field (ORC-12): `{identifier, display}` from the first repetition,
/// the display from the kanji repetition when there is one.
fn person(seg: &Segment, field: usize) -> Option<Value> {
    let reps = seg.reps(field);
    let id = reps.iter().map(|r| r.component(1)).find(|s| !s.is_empty());
    let name = reps
        .iter()
        .find(|r| r.component(15) != "P" && !(r.sub(2, 1).is_empty() && r.component(3).is_empty()))
        .or_else(|| reps.iter().find(|r| !r.sub(2, 1).is_empty()))
        .map(|r| {
            format!("{} {}", r.sub(2, 1), r.component(3))
                .trim()
                .to_string()
        });
    match (id, name) {
        (None, None) => None,
        (id, name) => {
            let mut v = json!({"type": "Practitioner"});
            if let Some(id) = id {
                v["identifier"] = json!({"value": id});
            }
            if let Some(n) = name.filter(|n| !n.is_empty()) {
                v["display"] = json!(n);
            }
            Some(v)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Problems: PPR^ZD1 (JAHIS 病名(歴)情報データ交換規約 Ver.3.0C, SS-MIX2 PPR-01): one PRB
// per diagnosis, PRB-3 the MEDIS exchange code, PRB-10 the ICD-10 code

fn problems(msg: &Message, ctx: &Context<'_>) -> Result<Vec<Mapped>, Vec<Issue>> {
    let mut c = Collect { issues: Vec::new() };
    let out: Vec<Mapped> = msg
        .segments
        .iter()
        .filter(|s| s.id == "PRB")
        .filter_map(|prb| {
            c.take(condition(prb, ctx)).map(|resource| Mapped {
                source: Location::segment("PRB", prb.sequence),
                resource,
            })
        })
        .collect();
    if out.is_empty() && c.issues.is_empty() {
        c.issues.push(Issue::error(
            Location::segment("PRB", 0),
            100,
            "no PRB segment: the message holds no diagnosis to record",
        ));
    }
    if c.issues.is_empty() {
        Ok(out)
    } else {
        Err(c.issues)
    }
}

fn condition(prb: &Segment, ctx: &Context<'_>) -> Result<Value, Issue> {
    match prb.value(1).as_str() {
        "AD" | "UC" | "CO" | "UP" | "" => {}
        other => {
            return Err(Issue::error(
                prb.at(1),
                207,
                format!("PRB-1 action {other} is not imported (AD, UP, CO, UC are): the shared record is create-only; change the Condition through the FHIR API"),
            ))
        }
    }
    let mut code = codeable(prb.rep(3), ctx).unwrap_or_else(|| json!({}));
    if code.get("coding").is_none() {
        code["coding"] = json!([]);
    }
    // PRB-10 problem classification: JAHIS puts the ICD-10 code in its first triplet
    let class = prb.rep(10);
    if matches!(
        class.component(3).to_ascii_uppercase().as_str(),
        "I10" | "ICD10"
    ) && !class.component(1).is_empty()
    {
        if let Some(all) = code["coding"].as_array_mut() {
            all.push(coding(
                &class.component(1),
                &class.component(2),
                &class.component(3),
                ctx,
            ));
        }
    }
    let text = [prb.component(3, 2), prb.rep(17).text()]
        .into_iter()
        .find(|t| !t.trim().is_empty());
    if let Some(t) = text {
        code["text"] = json!(t.trim());
    }
    if code["coding"].as_array().is_none_or(Vec::is_empty) {
        if code.get("text").is_none() {
            return Err(Issue::error(
                prb.at(3),
                101,
                "PRB-3 problem ID (the diagnosis code) is empty",
            ));
        }
        if let Some(o) = code.as_object_mut() {
            o.remove("coding");
        }
    }
    let date = |field: usize, what: &str| -> Result<Option<String>, Issue> {
        let v = prb.value(field);
        if v.is_empty() {
            return Ok(None);
        }
        fhir_datetime(&v).map(Some).ok_or_else(|| {
            Issue::error(
                prb.at(field),
                102,
                format!("PRB-{field} {what} {v:?} is not an HL7 date/time"),
            )
        })
    };
    let onset = date(16, "date of onset")?;
    let established = date(7, "problem established date")?;
    let action = date(2, "action date")?;
    let resolved = date(9, "actual resolution date")?;
    // PRB-14 (JAHIS: 転帰区分, HL7 table 0241): F fully recovered, D died, N not recovered…
    let outcome = prb.value(14);
    let clinical = match (resolved.is_some(), outcome.as_str()) {
        (_, "F") => "resolved",
        (true, _) | (_, "D") => "inactive",
        _ => "active",
    };
    let mut r = Map::new();
    r.insert("resourceType".into(), json!("Condition"));
    let instance = prb.value(4);
    if !instance.is_empty() {
        r.insert(
            "identifier".into(),
            json!([ctx.identifier("problem", &instance)]),
        );
    }
    r.insert(
        "clinicalStatus".into(),
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]}),
    );
    let verification = match prb.value(13).to_ascii_uppercase().as_str() {
        "C" | "CONFIRMED" => Some("confirmed"),
        "P" | "PROVISIONAL" | "S" => Some("provisional"),
        "D" | "DIFFERENTIAL" => Some("differential"),
        "R" | "REFUTED" => Some("refuted"),
        _ => None,
    };
    if let Some(v) = verification {
        r.insert(
            "verificationStatus".into(),
            json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": v}]}),
        );
    }
    r.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                             "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]}]),
    );
    r.insert("code".into(), code);
    r.insert("subject".into(), ctx.subject());
    if let Some(o) = onset {
        r.insert("onsetDateTime".into(), json!(o));
    }
    if let Some(a) = resolved {
        r.insert("abatementDateTime".into(), json!(a));
    }
    if let Some(d) = established.or(action) {
        r.insert("recordedDate".into(), json!(d));
    }
    if !outcome.is_empty() {
        let shown = prb.component(14, 2);
        r.insert(
            "note".into(),
            json!([{"text": format!("転帰 (outcome, HL7 table 0241): {outcome}{}", if shown.is_empty() { String::new() } else { format!(" {shown}") })}]),
        );
    }
    Ok(Value::Object(r))
}

// ---------------------------------------------------------------------------------------
// Patient: ADT^A08 (HL7 v2.5 §3.3.8; SS-MIX2 ADT-00 患者基本情報の更新)

/// The Patient an ADT^A08 describes: the regional ID, the local ID, kanji and kana names,
/// sex, birth date, address and phone (JP Core names: IDE/SYL representations).
pub fn patient_update(msg: &Message, ctx: &Context<'_>) -> Result<Value, Vec<Issue>> {
    let Some(pid) = msg.first("PID") else {
        return Err(vec![Issue::error(
            Location::segment("PID", 0),
            100,
            "PID segment missing",
        )]);
    };
    let (local, _) = local_id(pid).map_err(|i| vec![i])?;
    let d = demographics(pid).map_err(|i| vec![i])?;
    let jp = ctx.facility.len() == 10 && ctx.facility.bytes().all(|b| b.is_ascii_digit());
    let local_system = if jp {
        format!("{JP_LOCAL_ID_OID}{}", ctx.facility)
    } else {
        format!("{ISSUER_SYSTEM}{}", ctx.facility)
    };
    let mut names = Vec::new();
    for r in pid.reps(5) {
        let (family, given) = (r.sub(1, 1), r.component(2));
        if family.is_empty() && given.is_empty() {
            continue;
        }
        let repr = match r.component(8).as_str() {
            "P" => "SYL",
            "A" => "ABC",
            _ => "IDE",
        };
        let mut n = json!({
            "extension": [{"url": EN_REPRESENTATION, "valueCode": repr}],
            "use": "official",
            "text": format!("{family} {given}").trim().to_string(),
            "family": family,
        });
        if !given.is_empty() {
            n["given"] = json!([given]);
        }
        names.push(n);
    }
    let mut p = json!({
        "resourceType": "Patient",
        "id": ctx.patient,
        "identifier": [
            {"use": "official", "system": REGIONAL_ID_SYSTEM, "value": ctx.patient},
            {"use": "secondary", "system": local_system, "value": local},
        ],
    });
    if !names.is_empty() {
        p["name"] = Value::Array(names);
    }
    if !d.sex.is_empty() {
        p["gender"] = json!(d.sex);
    }
    if !d.birth_date.is_empty() {
        p["birthDate"] = json!(d.birth_date);
    }
    // PID-11 XAD (JAHIS: the whole address as text in XAD.8 other geographic designation)
    let addresses: Vec<Value> = pid
        .reps(11)
        .iter()
        .filter(|a| !a.is_empty())
        .map(|a| {
            let mut v = Map::new();
            let text = [a.component(8), a.component(1)]
                .into_iter()
                .find(|t| !t.is_empty())
                .unwrap_or_else(|| {
                    [
                        a.component(4),
                        a.component(3),
                        a.component(1),
                        a.component(2),
                    ]
                    .concat()
                });
            for (k, c) in [("city", 3), ("state", 4), ("postalCode", 5), ("country", 6)] {
                let s = a.component(c);
                if !s.is_empty() {
                    v.insert(k.into(), json!(s));
                }
            }
            if !text.is_empty() {
                v.insert("text".into(), json!(text));
            }
            Value::Object(v)
        })
        .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
        .collect();
    if !addresses.is_empty() {
        p["address"] = Value::Array(addresses);
    }
    // PID-13 home, PID-14 business phone (XTN: XTN.12 unformatted number, else XTN.1)
    let mut telecom = Vec::new();
    for (field, usage) in [(13, "home"), (14, "work")] {
        for t in pid.reps(field) {
            let number = [t.component(12), t.component(1), t.component(4)]
                .into_iter()
                .find(|s| !s.is_empty());
            if let Some(n) = number {
                let system = if t.component(3) == "Internet" || n.contains('@') {
                    "email"
                } else {
                    "phone"
                };
                telecom.push(json!({"system": system, "value": n, "use": usage}));
            }
        }
    }
    if !telecom.is_empty() {
        p["telecom"] = Value::Array(telecom);
    }
    let death = pid.value(29);
    if !death.is_empty() {
        if let Some(d) = fhir_datetime(&death) {
            p["deceasedDateTime"] = json!(d);
        }
    } else if pid.value(30) == "Y" {
        p["deceasedBoolean"] = json!(true);
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------
// Codes

/// A CWE/CE repetition (code^text^system^alt code^alt text^alt system) as a
/// CodeableConcept; None when it holds no code and no text.
fn codeable(r: Rep<'_>, ctx: &Context<'_>) -> Option<Value> {
    let parts: Vec<String> = (1..=6).map(|c| r.component(c)).collect();
    codeable_parts(&parts, ctx)
}

/// The same from a list (TQ1-3.1 holds its CWE as subcomponents).
fn codeable_parts(p: &[String], ctx: &Context<'_>) -> Option<Value> {
    let get = |i: usize| p.get(i).map(String::as_str).unwrap_or("");
    let mut codings = Vec::new();
    for base in [0, 3] {
        if !get(base).is_empty() {
            codings.push(coding(get(base), get(base + 1), get(base + 2), ctx));
        }
    }
    let text = [get(1), get(4)].into_iter().find(|t| !t.is_empty());
    if codings.is_empty() && text.is_none() {
        return None;
    }
    let mut v = json!({});
    if !codings.is_empty() {
        v["coding"] = Value::Array(codings);
    }
    if let Some(t) = text {
        v["text"] = json!(t);
    }
    Some(v)
}

fn coding(code: &str, display: &str, system: &str, ctx: &Context<'_>) -> Value {
    let mut c = json!({"system": system_uri(system, code, ctx), "code": code});
    if !display.is_empty() {
        c["display"] = json!(display);
    }
    c
}

/// The FHIR system of an HL7 v2 coding-system name (module docs).
pub fn system_uri(name: &str, code: &str, ctx: &Context<'_>) -> String {
    let upper = name.trim().to_ascii_uppercase();
    let hot = |len: usize| match len {
        7 => "urn:oid:1.2.392.200119.4.403.2",
        13 => "urn:oid:1.2.392.200119.4.402.1",
        _ => "urn:oid:1.2.392.200119.4.403.1",
    };
    let known = match upper.as_str() {
        "JC10" | "JLAC10" => Some(JLAC10),
        "LN" | "LOINC" => Some("http://loinc.org"),
        "HOT" => Some(hot(code.len())),
        "HOT9" => Some("urn:oid:1.2.392.200119.4.403.1"),
        "HOT7" => Some("urn:oid:1.2.392.200119.4.403.2"),
        "HOT13" => Some("urn:oid:1.2.392.200119.4.402.1"),
        "YJ" => Some("urn:oid:1.2.392.100495.20.2.73"),
        "MDCDX2" | "MDCDX" => Some("urn:oid:1.2.392.200119.4.101.6"),
        "I10" | "ICD10" => Some("http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full"),
        "MR9P" => Some(MERIT9),
        "JAMISDP01" => Some("urn:oid:1.2.392.200250.2.2.20.20"),
        "UCUM" => Some(UCUM),
        "SCT" | "SNM3" => Some("http://snomed.info/sct"),
        _ => None,
    };
    if let Some(k) = known {
        return k.to_string();
    }
    if let Some(n) = upper
        .strip_prefix("HL7")
        .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
    {
        return format!("http://terminology.hl7.org/CodeSystem/v2-{n}");
    }
    let safe: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        format!("urn:renkei:local:{}", ctx.facility)
    } else if safe.starts_with("99") || safe == "L" {
        format!("urn:renkei:local:{}:{safe}", ctx.facility)
    } else {
        format!("urn:renkei:hl7-table:{safe}")
    }
}

// ---------------------------------------------------------------------------------------
// Dates (HL7 v2.5 §2.A.22 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ])

struct Dtm {
    date: String,
    time: Option<(u32, u32, u32, String)>,
    offset: Option<String>,
}

fn parse_dtm(s: &str) -> Option<Dtm> {
    let s = s.trim();
    let (body, offset) = match s.find(['+', '-']) {
        Some(i) => {
            let off = &s[i + 1..];
            if off.len() != 4 || !off.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (h, m): (u32, u32) = (off[..2].parse().ok()?, off[2..].parse().ok()?);
            if h > 14 || m > 59 {
                return None;
            }
            (
                &s[..i],
                Some(format!("{}{}:{}", &s[i..=i], &off[..2], &off[2..])),
            )
        }
        None => (s, None),
    };
    let (digits, frac) = match body.split_once('.') {
        Some((d, f)) if !f.is_empty() && f.len() <= 4 && f.bytes().all(|b| b.is_ascii_digit()) => {
            (d, format!(".{f}"))
        }
        Some(_) => return None,
        None => (body, String::new()),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return None;
    }
    if !frac.is_empty() && digits.len() != 14 {
        return None;
    }
    let num = |a: usize, b: usize| digits.get(a..b).and_then(|x| x.parse::<u32>().ok());
    let year = num(0, 4)?;
    let mut date = format!("{year:04}");
    if digits.len() >= 6 {
        let m = num(4, 6)?;
        if !(1..=12).contains(&m) {
            return None;
        }
        date.push_str(&format!("-{m:02}"));
        if digits.len() >= 8 {
            let d = num(6, 8)?;
            if d < 1 || d > days_in_month(year, m) {
                return None;
            }
            date.push_str(&format!("-{d:02}"));
        }
    }
    let time = if digits.len() >= 10 {
        let h = num(8, 10)?;
        let mi = if digits.len() >= 12 { num(10, 12)? } else { 0 };
        let se = if digits.len() >= 14 { num(12, 14)? } else { 0 };
        if h > 23 || mi > 59 || se > 59 {
            return None;
        }
        Some((h, mi, se, frac))
    } else {
        None
    };
    Some(Dtm { date, time, offset })
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// HL7 DTM → FHIR dateTime (a time gets seconds and an offset; +09:00 when none given).
pub fn fhir_datetime(s: &str) -> Option<String> {
    let d = parse_dtm(s)?;
    Some(match d.time {
        None => d.date,
        Some((h, m, sec, frac)) => format!(
            "{}T{h:02}:{m:02}:{sec:02}{frac}{}",
            d.date,
            d.offset.as_deref().unwrap_or("+09:00")
        ),
    })
}

/// HL7 DT/DTM → FHIR date (YYYY, YYYY-MM or YYYY-MM-DD).
pub fn fhir_date(s: &str) -> Option<String> {
    parse_dtm(s).map(|d| d.date)
}

/// HL7 DTM → FHIR instant: only when given to the second.
pub fn fhir_instant(s: &str) -> Option<String> {
    let d = parse_dtm(s)?;
    let t = s.trim();
    let digits = t.find(['+', '-', '.']).unwrap_or(t.len());
    (digits == 14 && d.time.is_some())
        .then(|| fhir_datetime(s))
        .flatten()
}

/// `YYYY-MM-DD` plus `n` days.
fn add_days(date: &str, n: i64) -> Option<String> {
    use renkei_model::time::{civil_from_days, days_from_civil};
    let y: i64 = date.get(0..4)?.parse().ok()?;
    let m: u32 = date.get(5..7)?.parse().ok()?;
    let d: u32 = date.get(8..10)?.parse().ok()?;
    let (yy, mm, dd) = civil_from_days(days_from_civil(y, m, d) + n);
    Some(format!("{yy:04}-{mm:02}-{dd:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::encoding::Charset;

    fn ctx() -> Context<'static> {
        Context {
            facility: "1310000002",
            facility_name: "Lab B",
            patient: "R000000017",
            control_id: "MSG1",
        }
    }

    fn parse(text: &str) -> Message {
        Message::parse(text.replace('\n', "\r").as_bytes()).unwrap()
    }

    fn resources(kind: Kind, m: &Message) -> Vec<Value> {
        map(kind, m, &ctx())
            .unwrap()
            .into_iter()
            .map(|m| m.resource)
            .collect()
    }

    const OUL: &str = "MSH|^~\\&|LIS|1310000002|RENKEI|REGION|20240301100000||OUL^R22^OUL_R22|L0001|P|2.5||||||UNICODE UTF-8
PID|0001||12345^^^^PI||佐藤^花子^^^^^L^I~サトウ^ハナコ^^^^^L^P||19751010|F
SPM|0001|||019^血液^JC10||||||||||||||20240301081500
ORC|SC|ORD-77|||||||20240301080000
OBR|0001|ORD-77|FIL-77|1^生化学^99XYZ|||20240301081500|||||||||||||||20240301095912
OBX|0001|NM|3D046000001920402^HbA1c(NGSP)^JC10^4548-4^Hemoglobin A1c^LN||6.8|%^%^UCUM|4.6-6.2|H|||F|||20240301090000
NTE|1||再検済み
OBX|0002|NM|3D010000002227101^グルコース^JC10||１２６|mg/dL^mg/dL^99UNT|73-109|H|||F
OBX|0003|SN|5C070000002306201^CRP^JC10||<^0.3|mg/dL|<0.3||||F
OBX|0004|ST|1A010000000190111^尿蛋白^JC10||(-)||||||F
OBX|0005|CWE|9Z999^判定^99LAB||POS^陽性^HL70078||||||P";

    #[test]
    fn lab_results_map_to_observations() {
        let m = parse(OUL);
        let obs = resources(Kind::LabResults, &m);
        assert_eq!(obs.len(), 5);
        let a1c = &obs[0];
        assert_eq!(a1c["resourceType"], "Observation");
        assert_eq!(a1c["status"], "final");
        assert_eq!(a1c["subject"]["reference"], "Patient/R000000017");
        assert_eq!(a1c["code"]["coding"][0]["system"], JLAC10);
        assert_eq!(a1c["code"]["coding"][0]["code"], "3D046000001920402");
        assert_eq!(a1c["code"]["coding"][1]["system"], "http://loinc.org");
        assert_eq!(a1c["code"]["text"], "HbA1c(NGSP)");
        assert_eq!(a1c["valueQuantity"]["value"], 6.8);
        assert_eq!(a1c["valueQuantity"]["system"], UCUM);
        assert_eq!(a1c["valueQuantity"]["code"], "%");
        assert_eq!(a1c["referenceRange"][0]["low"]["value"], 4.6);
        assert_eq!(a1c["referenceRange"][0]["high"]["value"], 6.2);
        assert_eq!(a1c["referenceRange"][0]["text"], "4.6-6.2");
        assert_eq!(a1c["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(a1c["effectiveDateTime"], "2024-03-01T09:00:00+09:00");
        assert_eq!(a1c["issued"], "2024-03-01T09:59:12+09:00");
        assert_eq!(a1c["note"][0]["text"], "再検済み");
        assert_eq!(a1c["identifier"][0]["value"], "FIL-77|3D046000001920402");
        assert_eq!(
            a1c["identifier"][0]["system"],
            "urn:renkei:hl7:1310000002:result"
        );
        assert_eq!(a1c["performer"][0]["identifier"]["value"], "1310000002");
        // full-width digits; local unit table: no UCUM code
        let glu = &obs[1];
        assert_eq!(glu["valueQuantity"]["value"], 126.0);
        assert_eq!(glu["valueQuantity"]["unit"], "mg/dL");
        assert!(glu["valueQuantity"].get("system").is_none());
        // effective falls back to the collection time (OBR-7)
        assert_eq!(glu["effectiveDateTime"], "2024-03-01T08:15:00+09:00");
        let crp = &obs[2];
        assert_eq!(crp["valueQuantity"]["comparator"], "<");
        assert_eq!(crp["referenceRange"][0]["high"]["value"], 0.3);
        assert_eq!(obs[3]["valueString"], "(-)");
        assert_eq!(
            obs[4]["valueCodeableConcept"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v2-0078"
        );
        assert_eq!(obs[4]["status"], "preliminary");
        assert_eq!(
            obs[4]["code"]["coding"][0]["system"],
            "urn:renkei:local:1310000002:99LAB"
        );
    }

    #[test]
    fn lab_errors_are_all_reported() {
        let bad = OUL
            .replace("||6.8|", "||6,8|")
            .replace("|CWE|", "|ED|")
            .replace("1A010000000190111^尿蛋白^JC10", "");
        let issues = map(Kind::LabResults, &parse(&bad), &ctx()).unwrap_err();
        let at: Vec<String> = issues.iter().map(|i| i.location.to_string()).collect();
        assert_eq!(at, vec!["OBX-5", "OBX[4]-3", "OBX[5]-2"], "{issues:?}");
        assert!(issues[0].text.contains("not a number"));
        assert_eq!(issues[0].code, 102);
        let none = "MSH|^~\\&|LIS|X|||2024||ORU^R01|1|P|2.5\nPID|||1";
        let issues = map(Kind::LabResults, &parse(none), &ctx()).unwrap_err();
        assert_eq!(issues[0].location.segment, "OBX");
        let deleted = OUL.replace("|H|||F|||20240301090000", "|H|||D|||20240301090000");
        let issues = map(Kind::LabResults, &parse(&deleted), &ctx()).unwrap_err();
        assert_eq!(issues[0].code, 207);
    }

    const RDE: &str = "MSH|^~\\&|HIS|1310000001|RENKEI|REGION|20240305101500||RDE^O11^RDE_O11|P0001|P|2.5||||||~ISO IR87||ISO 2022-1994
PID|0001||12345^^^^PI||佐藤^花子^^^^^L^I~サトウ^ハナコ^^^^^L^P||19751010|F
ORC|NW|RX-1001||RX-1001_01|||||20240305101000|||110^医師^一郎^^^^^^^L^^^^^I~^イシ^イチロウ^^^^^^^L^^^^^P|||||01^内科^99Z01
RXE||620004389^メトホルミン塩酸塩錠２５０ｍｇ^HOT^3962002F1024^メトホルミン^YJ|1||TAB^錠^MR9P|TAB^錠^MR9P|01^１回目から服用^JHSP0005|||42|TAB^錠^MR9P||||||||3^TAB&錠&MR9P||OHP^外来処方^MR9P||||||21^内服^JHSP0003
TQ1|||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||14^D&日&ISO+|20240305
RXR|PO^口^HL70162
ORC|NW|RX-1001||RX-1001_02|||||20240305101000
RXE||100795402^ボルタレン錠２５ｍｇ^HOT|1||TAB^錠^MR9P|||||10|TAB^錠^MR9P||||||||||||||||22^頓用^JHSP0003
TQ1|||1050110020000000&内服・経口・疼痛時&JAMISDP01||||20240305||||１日２回まで|||10
RXR|PO^口^HL70162";

    #[test]
    fn prescriptions_map_to_medication_requests() {
        // JAHIS: ISO-2022-JP, one segment at a time
        let bytes: Vec<u8> = RDE
            .split('\n')
            .map(|s| Charset::Iso2022Jp.encode(s))
            .collect::<Vec<_>>()
            .join(&b'\r');
        let rde = Message::parse(&bytes).unwrap();
        let rx = resources(Kind::Prescription, &rde);
        assert_eq!(rx.len(), 2);
        let m = &rx[0];
        assert_eq!(m["resourceType"], "MedicationRequest");
        assert_eq!(
            (m["status"].as_str(), m["intent"].as_str()),
            (Some("active"), Some("order"))
        );
        assert_eq!(
            m["medicationCodeableConcept"]["coding"][0]["system"],
            "urn:oid:1.2.392.200119.4.403.1"
        );
        assert_eq!(
            m["medicationCodeableConcept"]["coding"][0]["code"],
            "620004389"
        );
        assert_eq!(
            m["medicationCodeableConcept"]["coding"][1]["system"],
            "urn:oid:1.2.392.100495.20.2.73"
        );
        assert_eq!(m["authoredOn"], "2024-03-05T10:10:00+09:00");
        assert_eq!(m["requester"]["display"], "医師 一郎");
        assert_eq!(m["identifier"][0]["value"], "RX-1001_01|1");
        assert_eq!(m["groupIdentifier"]["value"], "RX-1001");
        assert_eq!(m["category"][0]["text"], "内服");
        let d = &m["dosageInstruction"][0];
        assert_eq!(d["text"], "内服・経口・１日３回朝昼夕食後");
        assert_eq!(
            d["timing"]["code"]["coding"][0]["system"],
            "urn:oid:1.2.392.200250.2.2.20.20"
        );
        assert_eq!(d["timing"]["code"]["coding"][0]["code"], "1013044400000000");
        assert_eq!(d["timing"]["repeat"]["boundsPeriod"]["start"], "2024-03-05");
        assert_eq!(d["timing"]["repeat"]["boundsPeriod"]["end"], "2024-03-18");
        assert_eq!(
            d["route"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v2-0162"
        );
        assert_eq!(d["route"]["coding"][0]["code"], "PO");
        assert_eq!(d["doseAndRate"][0]["doseQuantity"]["value"], 1.0);
        assert_eq!(d["doseAndRate"][0]["doseQuantity"]["unit"], "錠");
        assert_eq!(d["doseAndRate"][0]["doseQuantity"]["system"], MERIT9);
        assert_eq!(d["additionalInstruction"][0]["text"], "１回目から服用");
        assert_eq!(m["dispenseRequest"]["quantity"]["value"], 42.0);
        assert_eq!(m["dispenseRequest"]["expectedSupplyDuration"]["code"], "d");
        assert_eq!(
            m["dispenseRequest"]["expectedSupplyDuration"]["value"],
            14.0
        );
        let prn = &rx[1];
        assert_eq!(prn["dosageInstruction"][0]["timing"]["repeat"]["count"], 10);
        assert_eq!(
            prn["dosageInstruction"][0]["patientInstruction"],
            "１日２回まで"
        );
        assert_eq!(prn["identifier"][0]["value"], "RX-1001_02|1");
        // cancellations are reported, not imported
        let ca = RDE
            .replace("ORC|NW|RX-1001||RX-1001_02", "ORC|CA|RX-1001||RX-1001_02")
            .replace("~ISO IR87||ISO 2022-1994", "UNICODE UTF-8");
        let issues = map(Kind::Prescription, &parse(&ca), &ctx()).unwrap_err();
        assert_eq!(issues[0].location.to_string(), "ORC[2]-1");
    }

    #[test]
    fn problems_map_to_conditions() {
        let text = "MSH|^~\\&|HIS|1310000001|||20240306||PPR^ZD1^PPR_ZD1|D1|P|2.5
PID|0001||12345^^^^PI||佐藤^花子
PRB|AD|20240306|20050047^２型糖尿病^MDCDX2|PRB-0001|||20240306|||||||||20230401
PRB|AD|20240306|20054174^胃炎^MDCDX2|PRB-0002|||20231101||20240201|K297^^I10^O^外来時^JHSD0004||||F^回復^HL70241|20240201|20231025";
        let c = resources(Kind::Problems, &parse(text));
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0]["code"]["coding"][0]["system"],
            "urn:oid:1.2.392.200119.4.101.6"
        );
        assert_eq!(c[0]["code"]["text"], "２型糖尿病");
        assert_eq!(c[0]["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(c[0]["onsetDateTime"], "2023-04-01");
        assert_eq!(c[0]["recordedDate"], "2024-03-06");
        assert_eq!(c[1]["code"]["coding"][1]["code"], "K297");
        assert_eq!(
            c[1]["code"]["coding"][1]["system"],
            "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full"
        );
        assert_eq!(c[1]["clinicalStatus"]["coding"][0]["code"], "resolved");
        assert_eq!(c[1]["abatementDateTime"], "2024-02-01");
        let de = text.replace("PRB|AD|20240306|20050047", "PRB|DE|20240306|20050047");
        assert_eq!(
            map(Kind::Problems, &parse(&de), &ctx()).unwrap_err()[0].code,
            207
        );
    }

    #[test]
    fn adt_a08_maps_to_a_patient() {
        let text = "MSH|^~\\&|HIS|1310000001|||20240306||ADT^A08^ADT_A01|A1|P|2.5
EVN||20240306
PID|0001||12345^^^^PI||佐藤^花子^^^^^L^I~サトウ^ハナコ^^^^^L^P||19751010|F|||^^渋谷区^東京都^1510071^JPN^H^東京都渋谷区本町三丁目１２−１||^PRN^PH^^^^^^^^^03-1234-5678";
        let m = parse(text);
        let p = patient_update(&m, &ctx()).unwrap();
        assert_eq!(p["resourceType"], "Patient");
        assert_eq!(
            p["identifier"][1]["system"],
            "urn:oid:1.2.392.100495.20.3.51.11310000002"
        );
        assert_eq!(p["identifier"][1]["value"], "12345");
        assert_eq!(p["name"][0]["family"], "佐藤");
        assert_eq!(p["name"][0]["extension"][0]["valueCode"], "IDE");
        assert_eq!(p["name"][1]["given"][0], "ハナコ");
        assert_eq!(p["name"][1]["extension"][0]["valueCode"], "SYL");
        assert_eq!(p["gender"], "female");
        assert_eq!(p["birthDate"], "1975-10-10");
        assert_eq!(p["address"][0]["text"], "東京都渋谷区本町三丁目１２−１");
        assert_eq!(p["address"][0]["postalCode"], "1510071");
        assert_eq!(p["telecom"][0]["value"], "03-1234-5678");
        let d = demographics(m.first("PID").unwrap()).unwrap();
        assert_eq!(
            (d.family_kana.as_str(), d.sex.as_str()),
            ("サトウ", "female")
        );
    }

    #[test]
    fn dates() {
        assert_eq!(fhir_datetime("20240301").as_deref(), Some("2024-03-01"));
        assert_eq!(fhir_datetime("202403").as_deref(), Some("2024-03"));
        assert_eq!(
            fhir_datetime("2024030109").as_deref(),
            Some("2024-03-01T09:00:00+09:00")
        );
        assert_eq!(
            fhir_datetime("20240301093015.123+0000").as_deref(),
            Some("2024-03-01T09:30:15.123+00:00")
        );
        assert_eq!(fhir_datetime("20240230"), None);
        assert_eq!(fhir_datetime("2024-03-01"), None);
        assert_eq!(fhir_datetime("20240301250000"), None);
        assert_eq!(fhir_instant("202403010930"), None);
        assert_eq!(
            fhir_instant("20240301093000").as_deref(),
            Some("2024-03-01T09:30:00+09:00")
        );
        assert_eq!(add_days("2024-02-28", 1).as_deref(), Some("2024-02-29"));
        assert_eq!(add_days("2024-12-31", 1).as_deref(), Some("2025-01-01"));
        assert_eq!(add_days("2024-03-05", 13).as_deref(), Some("2024-03-18"));
    }

    #[test]
    fn kinds() {
        assert_eq!(Kind::of("OUL", "R22"), Ok(Kind::LabResults));
        assert_eq!(Kind::of("ADT", "A01").unwrap_err().code, 201);
        assert_eq!(Kind::of("QRY", "A19").unwrap_err().code, 200);
    }
}
