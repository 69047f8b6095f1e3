#!/usr/bin/env python3
"""Write the HL7 v2.5 test messages of this folder (see README.md) in the character sets
Japanese systems use: ISO-2022-JP (JAHIS / SS-MIX2: MSH-18 "~ISO IR87", MSH-20
"ISO 2022-1994"), Shift_JIS (MSH-18 "SJIS"; written as CP932, as Windows systems do) and
UTF-8 (MSH-18 "UNICODE UTF-8").

ISO-2022-JP is encoded one segment at a time, so that every segment starts and ends in
ASCII (the escape sequence ESC ( B comes before each CR), as JAHIS requires.

Run from anywhere: python3 testdata/hl7/generate.py
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent

# Hospital A (medical institution code 1310000001) sends everything: its HIS (orders,
# patient, problems) and its laboratory system (results). The patient: local ID 0000123456,
# 佐藤 花子 (サトウ ハナコ), born 1975-10-10, female.
PID = "PID|0001||0000123456^^^^PI||佐藤^花子^^^^^L^I~サトウ^ハナコ^^^^^L^P||19751010|F"

OUL_HBA1C = [
    "MSH|^~\\&|LIS|1310000001|RENKEI|REGION|20240301100512||OUL^R22^OUL_R22|LAB20240301-0001|P|2.5||||||~ISO IR87||ISO 2022-1994",
    PID,
    "PV1|0001|O|01^^^^^C",
    "SPM|0001|||019^全血^JC10^01^血液^99XYZ",
    "ORC|SC|ORD-240301-01|||||||20240301081000",
    "OBR|0001|ORD-240301-01|FIL-240301-01|1^生化学^99XYZ|||20240301083000|||||||||||||||20240301100500",
    "OBX|0001|NM|3D046000001920402^ＨｂＡ１ｃ（ＮＧＳＰ）^JC10^4548-4^Hemoglobin A1c/Hemoglobin.total in Blood^LN||7.2|%^%^UCUM|4.6-6.2|H|||F|||20240301093000",
    "OBX|0002|NM|3D010000002227101^グルコース^JC10^2345-7^Glucose [Mass/volume] in Serum or Plasma^LN||148|mg/dL^mg/dL^UCUM|73-109|H|||F|||20240301093000",
]

ORU_SJIS = [
    "MSH|^~\\&|LIS|1310000001|RENKEI|REGION|20240308112000||ORU^R01^ORU_R01|LAB20240308-0002|P|2.5||||||SJIS",
    PID,
    "ORC|RE|ORD-240308-02",
    "OBR|0001|ORD-240308-02|FIL-240308-02|1^生化学^99XYZ|||20240308090000|||||||||||||||20240308111500",
    "OBX|0001|NM|3D010000001926101^空腹時血糖^JC10^1558-6^Fasting glucose^LN||131|mg/dL^mg/dL^UCUM|73-109|H|||F|||20240308100000",
    # 表 and ソ end in 0x5C (the escape character) in Shift_JIS: a parser that splits the
    # bytes before decoding them breaks here
    "NTE|1||検体表示ソート確認済み",
    "OBX|0002|NM|3C015000002327101^クレアチニン^JC10^2160-0^Creatinine [Mass/volume] in Serum or Plasma^LN||0.62|mg/dL^mg/dL^UCUM|0.46-0.79|N|||F|||20240308100000",
]

RDE_UTF8 = [
    "MSH|^~\\&|HIS|1310000001|RENKEI|REGION|20240305101500||RDE^O11^RDE_O11|RX20240305-0001|P|2.5||||||UNICODE UTF-8",
    PID,
    "PV1|0001|O|01^^^^^C||||110^医師^一郎^^^^^^^L^^^^^I",
    "ORC|NW|RX-240305-01||RX-240305-01_01|||||20240305101000|||110^医師^一郎^^^^^^^L^^^^^I~^イシ^イチロウ^^^^^^^L^^^^^P|||||01^内科^99Z01",
    "RXE||620008868^メトホルミン塩酸塩錠２５０ｍｇ^HOT^3962002F1024^メトホルミン塩酸塩錠250mg^YJ|1||TAB^錠^MR9P|TAB^錠^MR9P|01^１回目から服用^JHSP0005|||42|TAB^錠^MR9P||||||||3^TAB&錠&MR9P||OHP^外来処方^MR9P~OHI^院内処方^MR9P||||||21^内服^JHSP0003",
    "TQ1|||1013044400000000&内服・経口・１日３回朝昼夕食後&JAMISDP01|||14^D&日&ISO+|20240305",
    "RXR|PO^口^HL70162",
    "ORC|NW|RX-240305-01||RX-240305-01_02|||||20240305101000|||110^医師^一郎^^^^^^^L^^^^^I",
    "RXE||100795402^ボルタレン錠２５ｍｇ^HOT|1||TAB^錠^MR9P|||||10|TAB^錠^MR9P||||||||||OHP^外来処方^MR9P~OHI^院内処方^MR9P||||||22^頓用^JHSP0003",
    "TQ1|||1050110020000000&内服・経口・疼痛時&JAMISDP01||||20240305||||１日２回まで|||10",
    "RXR|PO^口^HL70162",
]

ADT_A08 = [
    "MSH|^~\\&|HIS|1310000001|RENKEI|REGION|20240306090000||ADT^A08^ADT_A01|ADT20240306-0001|P|2.5||||||~ISO IR87||ISO 2022-1994",
    "EVN||20240306085900|||||1310000001",
    "PID|0001||0000123456^^^^PI||佐藤^花子^^^^^L^I~サトウ^ハナコ^^^^^L^P||19751010|F|||^^新宿区^東京都^1600023^JPN^H^東京都新宿区西新宿二丁目８番１号||^PRN^PH^^^^^^^^^03-5321-1111",
    "PV1|0001|O",
]

PPR_SJIS = [
    "MSH|^~\\&|HIS|1310000001|RENKEI|REGION|20240305102000||PPR^ZD1^PPR_ZD1|DX20240305-0001|P|2.5||||||SJIS",
    PID,
    "PV1|0001|O|01^^^^^C",
    "PRB|AD|20240305|20050047^２型糖尿病^MDCDX2|PRB-0000123456-0001|||20240305|||E119^^I10^O^外来時^JHSD0004||||||20230401|２型糖尿病|1^主診断^JHSD0007",
    "PRB|AD|20240305|20062561^本態性高血圧症^MDCDX2|PRB-0000123456-0002|||20240305|||I10^^I10^O^外来時^JHSD0004||||||20220915|本態性高血圧症",
]

BATCH = [
    "FHS|^~\\&|LIS|1310000001|RENKEI|REGION|20240320170000",
    "BHS|^~\\&|LIS|1310000001|RENKEI|REGION|20240320170000",
    # 1: valid (AA)
    "MSH|^~\\&|LIS|1310000001|RENKEI|REGION|20240320100000||OUL^R22^OUL_R22|LAB20240320-0001|P|2.5||||||UNICODE UTF-8",
    PID,
    "SPM|0001|||019^全血^JC10",
    "ORC|SC|ORD-240320-01",
    "OBR|0001|ORD-240320-01|FIL-240320-01|1^生化学^99XYZ|||20240320083000",
    "OBX|0001|NM|3D046000001920402^HbA1c（NGSP）^JC10^4548-4^Hemoglobin A1c^LN||6.9|%^%^UCUM|4.6-6.2|H|||F|||20240320093000",
    # 2: malformed, no PID (AE naming PID)
    "MSH|^~\\&|LIS|1310000001|RENKEI|REGION|20240320100100||ORU^R01^ORU_R01|LAB20240320-0002|P|2.5||||||UNICODE UTF-8",
    "OBR|0001|ORD-240320-02|FIL-240320-02|1^生化学^99XYZ|||20240320083000",
    "OBX|0001|NM|3F077000002327101^LDLコレステロール^JC10^2089-1^LDL Cholesterol^LN||142|mg/dL^mg/dL^UCUM|65-139|H|||F",
    # 3: broken MSH: MSH-9 message type empty (AR naming MSH-9)
    "MSH|^~\\&|LIS|1310000001|RENKEI|REGION|20240320100200|||LAB20240320-0003|P|2.5||||||UNICODE UTF-8",
    PID,
    "OBX|0001|NM|3F015000002327101^HDLコレステロール^JC10||51|mg/dL^mg/dL^UCUM|40-90|N|||F",
    # 4: valid (AA)
    "MSH|^~\\&|LIS|1310000001|RENKEI|REGION|20240320100300||ORU^R01^ORU_R01|LAB20240320-0004|P|2.5||||||UNICODE UTF-8",
    PID,
    "OBR|0001|ORD-240320-04|FIL-240320-04|1^生化学^99XYZ|||20240320083000",
    "OBX|0001|NM|3F050000002327101^総コレステロール^JC10^2093-3^Cholesterol [Mass/volume] in Serum or Plasma^LN||221|mg/dL^mg/dL^UCUM|142-219|H|||F|||20240320093000",
    "BTS|4",
    "FTS|1",
]


def write(name: str, segments: list[str], encoding: str, newline: bytes = b"\r") -> None:
    if encoding == "iso2022_jp":
        parts = [s.encode("iso2022_jp") for s in segments]
    else:
        parts = [s.encode(encoding) for s in segments]
    (HERE / name).write_bytes(newline.join(parts) + newline)


write("01_oul_r22_hba1c_iso2022jp.hl7", OUL_HBA1C, "iso2022_jp")
write("02_oru_r01_glucose_sjis.hl7", ORU_SJIS, "cp932")
write("03_rde_o11_prescription_utf8.hl7", RDE_UTF8, "utf-8")
write("04_adt_a08_update_iso2022jp.hl7", ADT_A08, "iso2022_jp")
write("05_ppr_zd1_problems_sjis.hl7", PPR_SJIS, "cp932")
# a batch as a file on disk: LF line ends, which the importer accepts like CR
write("06_batch_with_malformed_utf8.hl7", BATCH, "utf-8", b"\n")
