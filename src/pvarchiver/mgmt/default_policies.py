"""pvarchiver's built-in policies file; it behaves as the EPICS Archiver Appliance's default.

A site replaces it by pointing ARCHAPPL_POLICIES at its own file. The contract is the AA's:
getPolicyList(), getFieldsArchivedAsPartOfStream() and determinePolicy(pvInfo). pvInfo holds
pvName, dbrtype, elementCount, eventRate (events/s), eventCount, storageRate (bytes/s),
aliasName, and when known policyName (the user's choice), controlPV, MDEL, ADEL, SCAN, RTYP.
"""

STS = (
    "pb://localhost?name=STS&rootFolder=${ARCHAPPL_SHORT_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_HOUR&consolidateOnShutdown=true"
)
MTS = (
    "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_DAY&hold=2&gather=1"
)
LTS = "pb://localhost?name=LTS&rootFolder=${ARCHAPPL_LONG_TERM_FOLDER}&partitionGranularity=PARTITION_YEAR"
MTS_3_DAYS = (
    "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}"
    "&partitionGranularity=PARTITION_DAY&hold=3&gather=1"
)
BLACKHOLE = "blackhole://localhost?name=BlackHole"

# BPM PVs are held to about 1 GB a year: 35 bytes/s
BPMS_BYTES_PER_SECOND = 35.0

DISPLAY_AND_ALARM = ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR"]
FIELDS_BY_RECORD_TYPE = {
    "ai": DISPLAY_AND_ALARM,
    "calc": DISPLAY_AND_ALARM,
    "calcout": DISPLAY_AND_ALARM,
    "longin": DISPLAY_AND_ALARM,
    "dfanout": DISPLAY_AND_ALARM,
    "sub": DISPLAY_AND_ALARM,
    "ao": [*DISPLAY_AND_ALARM, "DRVH", "DRVL"],
    "longout": [*DISPLAY_AND_ALARM, "DRVH", "DRVL"],
}


def getPolicyList():
    return {
        "Default": "The default policy",
        "BPMS": "BPMS that generate more than 1GB a year",
        "2HzPVs": "PVs with an event rate more than 2Hz",
        "3DaysMTSOnly": "Store data for 3 days upto the MTS only.",
    }


def getFieldsArchivedAsPartOfStream():
    return ["HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR", "DRVH", "DRVL"]


def _choose(pvInfo):
    wanted = pvInfo.get("policyName") or ""
    rate = float(pvInfo.get("eventRate") or 0.0)
    storage = float(pvInfo.get("storageRate") or 0.0)
    if wanted == "2HzPVs" or (not wanted and rate > 2.0):
        return "2HzPVs"
    if wanted == "BPMS" or (
        not wanted and str(pvInfo["pvName"]).startswith("BPMS") and storage > BPMS_BYTES_PER_SECOND
    ):
        return "BPMS"
    if wanted == "3DaysMTSOnly":
        return "3DaysMTSOnly"
    return "Default"


def determinePolicy(pvInfo):
    name = _choose(pvInfo)
    policy = {"policyName": name, "samplingMethod": "MONITOR", "samplingPeriod": 1.0}
    if name == "BPMS":
        rate = float(pvInfo.get("eventRate") or 0.0)
        storage = float(pvInfo.get("storageRate") or 0.0)
        if rate > 0:
            policy["samplingPeriod"] = storage / (BPMS_BYTES_PER_SECOND * rate)
    if name == "3DaysMTSOnly":
        policy["dataStores"] = [STS, MTS_3_DAYS, BLACKHOLE]
    else:
        policy["dataStores"] = [STS, MTS, LTS]
    policy["archiveFields"] = list(FIELDS_BY_RECORD_TYPE.get(pvInfo.get("RTYP"), []))
    return policy
