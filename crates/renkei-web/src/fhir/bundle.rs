//! Bundles and what they are built from: the request's query (repeated parameters kept),
//! the server's base URL, search parameters, searchset Bundles with `self`/`next`/
//! `previous` links (paging by `_offset`).

use axum::http::header::HOST;
use axum::http::HeaderMap;
use serde_json::{json, Value};

use renkei_share::clinical::{DateFilter, ResourceType, SearchPage, SearchParams, TokenFilter};

use super::FhirError;

/// The query of a request, decoded, in order.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, String)>);

fn unhex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode `application/x-www-form-urlencoded` text.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (unhex(b[i + 1]), unhex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encode a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl Params {
    /// Parse a raw query string.
    pub fn parse(raw: Option<&str>) -> Params {
        Params(
            raw.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// Every value of a parameter.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a parameter.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str, default: usize, max: usize) -> Result<usize, FhirError> {
        match self.first(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map(|n| n.min(max))
                .map_err(|_| FhirError::bad_request(format!("{name}={v:?} is not a number"))),
        }
    }
}

/// The server's absolute base URL as the client reached it (`X-Forwarded-Proto`, `Host`).
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '"']))
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// The parameter names a type's search takes, mapped to the generic ones: (name, kind).
fn aliases(t: ResourceType) -> &'static [(&'static str, &'static str)] {
    match t {
        ResourceType::Condition | ResourceType::AllergyIntolerance => &[
            ("clinical-status", "status"),
            ("onset-date", "date"),
            ("recorded-date", "date"),
        ],
        ResourceType::Encounter => &[("class", "category"), ("type", "code")],
        ResourceType::DocumentReference => &[("type", "code")],
        ResourceType::ImagingStudy => &[("modality", "code"), ("started", "date")],
        ResourceType::MedicationRequest => &[("authoredon", "date")],
        ResourceType::DetectedIssue => &[("identified", "date")],
        _ => &[],
    }
}

/// Parameters a search understands (reported in the `self` link).
pub fn understood(t: ResourceType, name: &str) -> bool {
    matches!(
        name,
        "patient"
            | "subject"
            | "date"
            | "code"
            | "category"
            | "status"
            | "_count"
            | "_offset"
            | "_sort"
            | "_include"
    ) || aliases(t).iter().any(|(a, _)| *a == name)
}

/// Search parameters of a type's search.
pub fn search_params(t: ResourceType, q: &Params) -> Result<SearchParams, FhirError> {
    let mut p = SearchParams::for_patient("");
    let patient = q.first("patient").or_else(|| q.first("subject"));
    p.patient = patient.unwrap_or_default().to_string();
    if p.patient.is_empty() {
        return Err(FhirError::bad_request(format!(
            "a {} search names the patient: ?patient=<regional ID> (searches never span patients)",
            t.as_str()
        )));
    }
    for (k, v) in &q.0 {
        let kind = aliases(t)
            .iter()
            .find(|(a, _)| a == k)
            .map_or(k.as_str(), |(_, g)| *g);
        match kind {
            "date" => p.dates.push(DateFilter::parse(v).ok_or_else(|| {
                FhirError::bad_request(format!(
                    "{k}={v:?}: expected [eq|ne|gt|lt|ge|le]YYYY[-MM[-DD[Thh:mm[:ss]][Z|±hh:mm]]]"
                ))
            })?),
            "code" => p.codes.push(v.split(',').map(TokenFilter::parse).collect()),
            "category" => p
                .categories
                .push(v.split(',').map(TokenFilter::parse).collect()),
            "status" => p
                .statuses
                .push(v.split(',').map(|s| s.trim().to_string()).collect()),
            "_include" => p.include.push(v.clone()),
            _ => {}
        }
    }
    p.newest_first = match q.first("_sort") {
        None | Some("-date") => true,
        Some("date") => false,
        Some(other) => {
            return Err(FhirError::bad_request(format!(
                "_sort={other:?}: only date and -date are supported"
            )))
        }
    };
    p.count = q.number("_count", 50, 500)?;
    p.offset = q.number("_offset", 0, usize::MAX)?;
    Ok(p)
}

/// Parameters of `$everything`: `start`, `end`, `_type`, `_count`, `_offset`.
pub fn everything_params(id: &str, q: &Params) -> Result<SearchParams, FhirError> {
    let mut p = SearchParams::for_patient(id);
    for (k, prefix) in [("start", "ge"), ("end", "le")] {
        if let Some(v) = q.first(k) {
            p.dates.push(
                DateFilter::parse(&format!("{prefix}{v}"))
                    .ok_or_else(|| FhirError::bad_request(format!("{k}={v:?} is not a date")))?,
            );
        }
    }
    for list in q.all("_type") {
        for name in list.split(',') {
            let t = ResourceType::parse(name.trim()).ok_or_else(|| {
                FhirError::bad_request(format!("_type {name:?} is not a type of the record"))
            })?;
            p.types.push(t);
        }
    }
    p.count = q.number("_count", 200, 1000)?;
    p.offset = q.number("_offset", 0, usize::MAX)?;
    p.newest_first = false;
    Ok(p)
}

/// A resource as served at `base`: attachment URLs absolute. The record keeps them
/// relative (`Binary/…`, which FHIR R4 allows for Attachment.url and resolves against the
/// service base), so that a new host name changes nothing stored; they are served absolute,
/// as ImagingStudy endpoints are, so that a client follows them as they are (and validators
/// that insist on a scheme are satisfied).
pub fn served(base: &str, mut r: Value) -> Value {
    if r["resourceType"] == "DocumentReference" {
        if let Some(content) = r["content"].as_array_mut() {
            for c in content {
                let url = &mut c["attachment"]["url"];
                if let Some(rel) = url.as_str().filter(|u| u.starts_with("Binary/")) {
                    *url = Value::String(format!("{base}/fhir/{rel}"));
                }
            }
        }
    }
    r
}

fn full_url(base: &str, r: &Value) -> String {
    format!(
        "{base}/fhir/{}/{}",
        r["resourceType"].as_str().unwrap_or_default(),
        r["id"].as_str().unwrap_or_default()
    )
}

/// A searchset Bundle of a page, with paging links. `path` is the request's path, `q` its
/// query (only `keep`-ed parameters go into the links).
pub fn searchset(
    base: &str,
    path: &str,
    q: &Params,
    keep: impl Fn(&str) -> bool,
    page: &SearchPage,
    offset: usize,
    count: usize,
) -> Value {
    let link = |off: usize| {
        let mut parts: Vec<String> =
            q.0.iter()
                .filter(|(k, _)| keep(k) && k != "_offset" && k != "_count")
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
        parts.push(format!("_count={count}"));
        parts.push(format!("_offset={off}"));
        format!("{base}{path}?{}", parts.join("&"))
    };
    let mut links = vec![json!({"relation": "self", "url": link(offset)})];
    if count > 0 && offset.saturating_add(count) < page.total {
        links.push(json!({"relation": "next", "url": link(offset + count)}));
    }
    if offset > 0 {
        links.push(
            json!({"relation": "previous", "url": link(offset.saturating_sub(count.max(1)))}),
        );
    }
    let mut entries: Vec<Value> = page
        .resources
        .iter()
        .map(|r| json!({"fullUrl": full_url(base, r), "resource": served(base, r.clone()), "search": {"mode": "match"}}))
        .collect();
    entries.extend(page.included.iter().map(
        |r| json!({"fullUrl": full_url(base, r), "resource": served(base, r.clone()), "search": {"mode": "include"}}),
    ));
    if let Some(reason) = &page.withheld {
        entries.push(json!({
            "resource": super::outcome("warning", "suppressed",
                &format!("some of the patient's records are not shown: {reason}")),
            "search": {"mode": "outcome"}
        }));
    }
    let mut b = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": links,
    });
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

/// A collection Bundle (`$check`, history is [`history`]).
pub fn collection(base: &str, resources: &[Value]) -> Value {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| {
            if r["id"].is_string() {
                json!({"fullUrl": full_url(base, r), "resource": served(base, r.clone())})
            } else {
                json!({"resource": r})
            }
        })
        .collect();
    let mut b = json!({"resourceType": "Bundle", "type": "collection"});
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

/// A history Bundle, newest version first.
pub fn history(base: &str, path: &str, versions: &[Value]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|r| {
            let v = r["meta"]["versionId"].as_str().unwrap_or("1");
            json!({
                "fullUrl": full_url(base, r),
                "resource": served(base, r.clone()),
                "request": {"method": if v == "1" { "POST" } else { "PUT" },
                    "url": format!("{}/{}", r["resourceType"].as_str().unwrap_or_default(),
                        r["id"].as_str().unwrap_or_default())},
                "response": {"status": if v == "1" { "201" } else { "200" },
                    "etag": format!("W/\"{v}\""),
                    "lastModified": r["meta"]["lastUpdated"]},
            })
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{base}{path}")}],
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_repeat() {
        let q = Params::parse(Some(
            "patient=Patient%2F0000000013&date=ge2024-01-01&date=le2024-12-31&code=http%3A%2F%2Floinc.org%7C4548-4&x=a+b",
        ));
        assert_eq!(q.first("patient"), Some("Patient/0000000013"));
        assert_eq!(q.all("date"), vec!["ge2024-01-01", "le2024-12-31"]);
        assert_eq!(q.first("code"), Some("http://loinc.org|4548-4"));
        assert_eq!(q.first("x"), Some("a b"));
        let p = search_params(ResourceType::Observation, &q).unwrap();
        assert_eq!(p.dates.len(), 2);
        assert_eq!(p.codes.len(), 1);
        assert_eq!(
            encode("http://loinc.org|4548-4"),
            "http://loinc.org%7C4548-4"
        );
        assert!(search_params(ResourceType::Observation, &Params::parse(Some("code=x"))).is_err());
        assert!(search_params(
            ResourceType::Observation,
            &Params::parse(Some("patient=1&date=2024-13"))
        )
        .is_err());
    }
}
