//! Settings of the duplicate checks: per-test windows and the drug-class table. Codes are
//! written `system|code`; a code alone matches any system, and a trailing `*` matches by
//! prefix (JLAC10's first five characters name the analyte: `3D046*` is HbA1c whatever the
//! specimen and method).

use serde::Deserialize;

/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// YJ code (薬価基準収載医薬品コード), JP Core's URI.
pub const YJ: &str = "urn:oid:1.2.392.100495.20.1.73";
/// HOT9 (MEDIS 標準医薬品マスター), JP Core's URI.
pub const HOT9: &str = "urn:oid:1.2.392.200119.4.403.1";
/// RxNorm.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// A test with its own duplicate window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TestWindow {
    /// Name shown in the DetectedIssue.
    pub name: String,
    /// Codes of the test (any of them: LOINC and JLAC10 spellings of the same test).
    pub codes: Vec<String>,
    /// Days within which a second order is flagged.
    pub window_days: u32,
}

/// A drug class: prescriptions of two different drugs of one class are flagged.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DrugClass {
    /// Name shown in the DetectedIssue.
    pub name: String,
    /// Drug codes (YJ, HOT, RxNorm), with `*` prefixes.
    pub codes: Vec<String>,
}

/// Settings of the clinical record (the `[clinical]` table of the node's config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ClinicalConfig {
    /// Days within which a lab order for the same test is flagged when the test has no
    /// window of its own (0: not checked).
    pub default_lab_window_days: u32,
    /// Days within which an imaging order for the same body site is flagged (0: not
    /// checked).
    pub imaging_window_days: u32,
    /// Tests with their own window.
    pub tests: Vec<TestWindow>,
    /// Drug classes.
    pub drug_classes: Vec<DrugClass>,
    /// YJ codes whose first 7 characters agree name the same active ingredient (flagged
    /// as a duplicate like the same code).
    pub yj_ingredient_match: bool,
    /// Most recent lab results listed per test in the emergency summary.
    pub summary_labs: usize,
    /// Imaging studies listed in the emergency summary.
    pub summary_studies: usize,
}

impl Default for ClinicalConfig {
    fn default() -> Self {
        let yj = |c: &str| format!("{YJ}|{c}*");
        let rx = |c: &str| format!("{RXNORM}|{c}");
        ClinicalConfig {
            default_lab_window_days: 7,
            imaging_window_days: 14,
            tests: vec![TestWindow {
                name: "HbA1c".into(),
                codes: vec![
                    format!("{LOINC}|4548-4"),
                    format!("{LOINC}|17856-6"),
                    format!("{LOINC}|59261-8"),
                    "3D046*".into(),
                ],
                window_days: 30,
            }],
            // illustrative: load the real table from the drug master of the region
            drug_classes: vec![
                DrugClass {
                    name: "HMG-CoA reductase inhibitors (statins)".into(),
                    codes: vec![
                        yj("2189010"), // pravastatin
                        yj("2189011"), // simvastatin
                        yj("2189012"), // fluvastatin
                        yj("2189015"), // atorvastatin
                        yj("2189016"), // pitavastatin
                        yj("2189017"), // rosuvastatin
                        rx("42463"),
                        rx("36567"),
                        rx("83367"),
                        rx("301542"),
                    ],
                },
                DrugClass {
                    name: "proton pump inhibitors / P-CAB".into(),
                    codes: vec![
                        yj("2329022"), // omeprazole
                        yj("2329023"), // lansoprazole
                        yj("2329028"), // rabeprazole
                        yj("2329029"), // esomeprazole
                        yj("2329030"), // vonoprazan
                        rx("7646"),
                        rx("17128"),
                        rx("283742"),
                        rx("40790"),
                        rx("114979"),
                    ],
                },
            ],
            yj_ingredient_match: true,
            summary_labs: 3,
            summary_studies: 5,
        }
    }
}

/// Whether a stored code (`system|code`) matches a pattern of the table.
pub(crate) fn pattern_matches(pattern: &str, code: &str) -> bool {
    let (csys, ccode) = code.split_once('|').unwrap_or(("", code));
    let (psys, pcode) = match pattern.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, pattern),
    };
    if psys.is_some_and(|s| s != csys) {
        return false;
    }
    match pcode.strip_suffix('*') {
        Some(prefix) => ccode.starts_with(prefix),
        None => ccode == pcode,
    }
}

impl ClinicalConfig {
    /// The test (name, window in days) a code belongs to, if the table names it.
    pub(crate) fn test_of(&self, code: &str) -> Option<&TestWindow> {
        self.tests
            .iter()
            .find(|t| t.codes.iter().any(|p| pattern_matches(p, code)))
    }

    /// The drug classes a code belongs to.
    pub(crate) fn classes_of<'a>(&'a self, code: &'a str) -> impl Iterator<Item = &'a DrugClass> {
        self.drug_classes
            .iter()
            .filter(move |c| c.codes.iter().any(|p| pattern_matches(p, code)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_table_keeps_the_other_defaults() {
        let c: ClinicalConfig = serde_json::from_value(serde_json::json!({
            "default_lab_window_days": 3,
            "tests": [{"name": "CRP", "codes": ["5C070*"], "window_days": 2}]
        }))
        .unwrap();
        assert_eq!(c.default_lab_window_days, 3);
        assert_eq!(c.tests.len(), 1, "a tests list replaces the default one");
        assert_eq!(c.imaging_window_days, 14);
        assert_eq!(c.drug_classes, ClinicalConfig::default().drug_classes);
    }

    #[test]
    fn patterns_match_by_system_and_prefix() {
        assert!(pattern_matches(
            "http://loinc.org|4548-4",
            "http://loinc.org|4548-4"
        ));
        assert!(!pattern_matches("http://loinc.org|4548-4", "urn:x|4548-4"));
        assert!(pattern_matches("4548-4", "urn:x|4548-4"));
        assert!(pattern_matches(
            "3D046*",
            "urn:oid:1.2.392.200119.4.504|3D046000001920402"
        ));
        assert!(!pattern_matches("3D046*", "http://loinc.org|4548-4"));
        let c = ClinicalConfig::default();
        assert_eq!(
            c.test_of("http://jpfhir.jp/fhir/core/CodeSystem/JP_ObservationLabResultCode_CS|3D046000001920402")
                .map(|t| t.window_days),
            Some(30)
        );
        assert_eq!(
            c.classes_of(&format!("{YJ}|2189017F1028")).count(),
            1,
            "rosuvastatin is a statin"
        );
    }
}
