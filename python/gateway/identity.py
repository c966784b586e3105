"""The gateway's implementation identity, sent in A-ASSOCIATE and File Meta
(STO-11, MED-5): the defaults, overridable from config (``[node]``)."""

IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1472.1"
IMPLEMENTATION_VERSION_NAME = "DICOM_GW_010"
