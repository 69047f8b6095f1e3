/*!
Human summaries of the node's JSON answers for `renkei admin`.

The printers read fields by name and tolerate what is missing (an older or newer node may
add or drop a field): a missing value shows as `-`, never as a failure. `--json` bypasses
all of this and prints the answer as received.
*/

use serde_json::Value;

/// A string field, or `""`.
pub(crate) fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A field shown to a person: strings as they are, numbers and booleans written out,
/// lists joined with ", ", missing or empty as `-`.
pub(crate) fn show(v: &Value, key: &str) -> String {
    show_value(v.get(key).unwrap_or(&Value::Null))
}

fn show_value(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(show_value).collect::<Vec<_>>().join(", "),
        Value::Object(_) => v.to_string(),
        other => other.to_string(),
    };
    if s.trim().is_empty() {
        "-".into()
    } else {
        s
    }
}

/// A time field: µs since the epoch (`*_us`) as RFC 3339 UTC, or a string as it is.
pub(crate) fn time(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_u64().map_or_else(|| n.to_string(), rfc3339_us),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => "-".into(),
    }
}

/// The first of several time fields present (`time_us`, `time`, …).
pub(crate) fn time_of(v: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find(|k| v.get(**k).is_some_and(|x| !x.is_null()))
        .map_or_else(|| "-".into(), |k| time(v, k))
}

pub(crate) use renkei_model::time::rfc3339_us;

/// Rows as columns padded to the widest cell (by characters), two spaces apart; the last
/// column is not padded.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The items of a list answer: the array itself, a FHIR Bundle's resources, or the array
/// under a conventional key (`items`, `records`, `results`).
pub(crate) fn items(v: &Value) -> Vec<&Value> {
    if let Some(a) = v.as_array() {
        return a.iter().collect();
    }
    if let Some(entries) = v.get("entry").and_then(Value::as_array) {
        return entries
            .iter()
            .map(|e| e.get("resource").unwrap_or(e))
            .collect();
    }
    for key in ["items", "records", "results", "data"] {
        if let Some(a) = v.get(key).and_then(Value::as_array) {
            return a.iter().collect();
        }
    }
    Vec::new()
}

/// `role@facility`, or whichever of the two is known.
pub(crate) fn role_at(role: &str, facility: &str) -> String {
    match (role.is_empty(), facility.is_empty()) {
        (false, false) => format!("{role}@{facility}"),
        (false, true) => role.to_string(),
        (true, false) => format!("@{facility}"),
        (true, true) => "-".into(),
    }
}

/// One line of the audit trail (`GET /api/audit`): time, sequence, actor (role@facility),
/// action, allowed/DENIED, break-glass, detail. Reads the record flat or with its fields
/// under `entry` (the stored shape).
pub(crate) fn audit_line(rec: &Value) -> String {
    let e = rec.get("entry").filter(|e| e.is_object()).unwrap_or(rec);
    let time = time_of(rec, &["time_us", "time", "recorded"]);
    let seq = rec.get("seq").map_or_else(|| "-".into(), show_value);
    let actor = actor_label(text(e, "actor"), text(e, "actor_name"));
    let allowed = e.get("allowed").and_then(Value::as_bool).unwrap_or(true);
    let glass = e
        .get("break_glass")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    audit_fields(
        &time,
        &seq,
        &actor,
        &role_at(text(e, "role"), text(e, "facility")),
        &show(e, "action"),
        allowed,
        glass,
        text(e, "detail"),
    )
}

/// The same line from a FHIR AuditEvent (`GET /fhir/AuditEvent`).
pub(crate) fn fhir_audit_line(ev: &Value) -> String {
    let agent = ev
        .get("agent")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .unwrap_or(&Value::Null);
    let who = agent.get("who").unwrap_or(&Value::Null);
    let actor = actor_label(
        who.get("identifier").map_or("", |i| text(i, "value")),
        text(who, "display"),
    );
    let role = agent
        .get("role")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .map_or("", |r| text(r, "text"));
    let facility = agent
        .get("location")
        .and_then(|l| l.get("identifier"))
        .map_or("", |i| text(i, "value"));
    let action = ev
        .get("extension")
        .and_then(Value::as_array)
        .and_then(|x| {
            x.iter()
                .find(|e| text(e, "url").ends_with("audit-action"))
                .map(|e| text(e, "valueString").to_string())
        })
        .or_else(|| {
            ev.get("type")
                .map(|t| text(t, "display").to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "-".into());
    let allowed = matches!(text(ev, "outcome"), "" | "0");
    let glass = ev
        .get("purposeOfEvent")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("coding").and_then(Value::as_array))
        .flatten()
        .any(|c| text(c, "code") == "ETREAT");
    audit_fields(
        &time(ev, "recorded"),
        &show(ev, "id"),
        &actor,
        &role_at(role, facility),
        &action,
        allowed,
        glass,
        text(ev, "outcomeDesc"),
    )
}

/// "id name" of an actor (user id and name, or `AE:<title>` alone).
fn actor_label(id: &str, name: &str) -> String {
    match (id, name) {
        ("", "") => "-".to_string(),
        (id, "") => id.to_string(),
        ("", name) => name.to_string(),
        (id, name) if id == name || id == format!("AE:{name}") => id.to_string(),
        (id, name) => format!("{id} {name}"),
    }
}

#[allow(clippy::too_many_arguments)]
fn audit_fields(
    time: &str,
    seq: &str,
    actor: &str,
    role_at: &str,
    action: &str,
    allowed: bool,
    glass: bool,
    detail: &str,
) -> String {
    let mut line = format!(
        "{time}  #{seq}  {actor} ({role_at})  {action}  {}",
        if allowed { "allowed" } else { "DENIED" }
    );
    if glass {
        line.push_str("  BREAK-GLASS");
    }
    if !detail.is_empty() {
        line.push_str("  ");
        line.push_str(detail);
    }
    line
}

/// What a person wants to see of a patient, from the node's record (`family`, `given`,
/// `family_kana`, …) or from a FHIR Patient resource.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PatientView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kana: String,
    pub(crate) birth_date: String,
    pub(crate) sex: String,
    pub(crate) address: String,
    pub(crate) phone: String,
    /// None when the answer does not say.
    pub(crate) consent: Option<bool>,
    pub(crate) merged_into: String,
}

impl PatientView {
    pub(crate) fn of(p: &Value) -> PatientView {
        if text(p, "resourceType") == "Patient" {
            return Self::of_fhir(p);
        }
        let join = |a: &str, b: &str| {
            [a, b]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        };
        PatientView {
            id: text(p, "id").into(),
            name: join(text(p, "family"), text(p, "given")),
            kana: join(text(p, "family_kana"), text(p, "given_kana")),
            birth_date: text(p, "birth_date").into(),
            sex: text(p, "sex").into(),
            address: text(p, "address").into(),
            phone: text(p, "phone").into(),
            consent: p
                .get("consent")
                .and_then(|c| c.get("given").or(Some(c)))
                .and_then(Value::as_bool),
            merged_into: text(p, "merged_into").into(),
        }
    }

    fn of_fhir(p: &Value) -> PatientView {
        let names: Vec<&Value> = p
            .get("name")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let render = |n: &Value| {
            let mut parts = vec![text(n, "family").to_string()];
            if let Some(g) = n.get("given").and_then(Value::as_array) {
                parts.extend(g.iter().filter_map(Value::as_str).map(str::to_string));
            }
            parts.retain(|s| !s.is_empty());
            parts.join(" ")
        };
        let is_kana = |n: &Value| {
            n.get("extension")
                .and_then(Value::as_array)
                .is_some_and(|x| x.iter().any(|e| text(e, "valueCode") == "SYL"))
        };
        let kana = names.iter().find(|n| is_kana(n)).map(|n| render(n));
        let official = names
            .iter()
            .find(|n| !is_kana(n) && text(n, "use") != "usual")
            .or_else(|| names.iter().find(|n| !is_kana(n)))
            .map(|n| render(n));
        let first_text = |key: &str, field: &str| {
            p.get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .map(|x| text(x, field).to_string())
                .unwrap_or_default()
        };
        let consent = p.get("extension").and_then(Value::as_array).and_then(|x| {
            x.iter()
                .find(|e| text(e, "url").ends_with("sharing-consent"))
                .and_then(|e| e.get("valueBoolean"))
                .and_then(Value::as_bool)
        });
        let merged_into = p
            .get("link")
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|l| text(l, "type") == "replaced-by"))
            .and_then(|l| l.get("other"))
            .map(|o| {
                text(o, "reference")
                    .trim_start_matches("Patient/")
                    .to_string()
            })
            .unwrap_or_default();
        PatientView {
            id: text(p, "id").into(),
            name: official.unwrap_or_default(),
            kana: kana.unwrap_or_default(),
            birth_date: text(p, "birthDate").into(),
            sex: text(p, "gender").into(),
            address: first_text("address", "text"),
            phone: first_text("telecom", "value"),
            consent,
            merged_into,
        }
    }

    /// "Family Given (kana)".
    pub(crate) fn display_name(&self) -> String {
        match (self.name.is_empty(), self.kana.is_empty()) {
            (false, false) => format!("{} ({})", self.name, self.kana),
            (false, true) => self.name.clone(),
            (true, false) => self.kana.clone(),
            (true, true) => "-".into(),
        }
    }
}

/// Key/value lines, keys padded to one width.
pub(crate) fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let v = if v.trim().is_empty() { "-" } else { v };
        for (i, line) in v.lines().enumerate() {
            let key = if i == 0 { *k } else { "" };
            out.push_str(&format!("{key:width$}  {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_us(1_795_741_323_000_000), "2026-11-27T01:02:03Z");
        assert_eq!(rfc3339_us(951_782_400_000_000), "2000-02-29T00:00:00Z");
        let v = json!({"a_us": 0, "b": "2026-01-01T00:00:00Z"});
        assert_eq!(time(&v, "a_us"), "1970-01-01T00:00:00Z");
        assert_eq!(time(&v, "b"), "2026-01-01T00:00:00Z");
        assert_eq!(time(&v, "c"), "-");
    }

    #[test]
    fn tables_align() {
        let t = table(&[
            vec!["CODE".into(), "NAME".into()],
            vec!["1310000001".into(), "東京".into()],
        ]);
        assert_eq!(t, "CODE        NAME\n1310000001  東京\n");
    }

    #[test]
    fn audit_lines_from_records_and_fhir() {
        let rec = json!({"seq": 7, "time_us": 1_795_741_323_000_000u64, "entry": {
            "actor": "u2", "actor_name": "Sato", "facility": "1310000001", "role": "doctor",
            "patient": "R1", "action": "check-in", "event": "patient-record",
            "purpose": "treatment", "allowed": false, "break_glass": true, "detail": "why"
        }, "prev_hash": []});
        assert_eq!(
            audit_line(&rec),
            "2026-11-27T01:02:03Z  #7  u2 Sato (doctor@1310000001)  check-in  DENIED  BREAK-GLASS  why"
        );
        let ev = json!({"resourceType": "AuditEvent", "id": "7", "recorded": "2026-11-27T01:02:03Z",
            "outcome": "4", "outcomeDesc": "why",
            "purposeOfEvent": [{"coding": [{"code": "ETREAT"}]}],
            "agent": [{"who": {"identifier": {"value": "u2"}, "display": "Sato"},
                       "role": [{"text": "doctor"}],
                       "location": {"identifier": {"value": "1310000001"}}}],
            "extension": [{"url": "http://renkei.invalid/fhir/StructureDefinition/audit-action",
                           "valueString": "check-in"}]});
        assert_eq!(
            fhir_audit_line(&ev),
            "2026-11-27T01:02:03Z  #7  u2 Sato (doctor@1310000001)  check-in  DENIED  BREAK-GLASS  why"
        );
        let bundle = json!({"resourceType": "Bundle", "entry": [{"resource": ev}]});
        assert_eq!(items(&bundle).len(), 1);
    }

    #[test]
    fn patients_from_record_and_fhir() {
        let rec = json!({"id": "R1", "family": "山田", "given": "太郎", "family_kana": "ヤマダ",
            "given_kana": "タロウ", "birth_date": "1970-01-02", "sex": "male",
            "consent": {"given": true}});
        let v = PatientView::of(&rec);
        assert_eq!(v.display_name(), "山田 太郎 (ヤマダ タロウ)");
        assert_eq!(v.consent, Some(true));
        let fhir = json!({"resourceType": "Patient", "id": "R1", "name": [
            {"use": "official", "family": "山田", "given": ["太郎"]},
            {"use": "usual", "family": "ヤマダ", "given": ["タロウ"], "extension": [{
                "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation",
                "valueCode": "SYL"}]}],
            "birthDate": "1970-01-02", "gender": "male"});
        let f = PatientView::of(&fhir);
        assert_eq!(f.display_name(), v.display_name());
        assert_eq!(
            (f.birth_date.as_str(), f.sex.as_str()),
            ("1970-01-02", "male")
        );
    }
}
