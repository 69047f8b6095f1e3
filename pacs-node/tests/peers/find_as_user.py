"""pynetdicom C-FINDs as users (issue 6): one association per stdin line
`CALLING_AE TOKEN PATIENT_ID` (TOKEN "-" = no User Identity; otherwise a type-1 User
Identity whose user name is the bearer token, PS3.7 D.3.3.7), a STUDY-level study-root
query by PatientID. Prints one line per query: the number of matches, or REJECTED.
Usage: find_as_user.py HOST PORT CALLED_AE < queries"""
import sys

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

host, port, called = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for line in sys.stdin:
    if not line.strip():
        continue
    calling, token, pid = line.split()
    ae = AE(ae_title=calling)
    ae.add_requested_context(FIND)
    ext = []
    if token != "-":
        ui = UserIdentityNegotiation()
        ui.user_identity_type = 1
        ui.primary_field = token.encode()
        ext.append(ui)
    assoc = ae.associate(host, port, ae_title=called, ext_neg=ext)
    if not assoc.is_established:
        print("REJECTED", flush=True)
        continue
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = pid
    ds.StudyInstanceUID = ""
    n, final = 0, None
    for status, ident in assoc.send_c_find(ds, FIND):
        if status is None:
            final = "NONE"
            break
        if status.Status in (0xFF00, 0xFF01):
            n += 1
        else:
            final = status.Status
    assoc.release()
    if final != 0:
        print(f"FAILED {final}", flush=True)
    else:
        print(n, flush=True)
