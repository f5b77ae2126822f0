"""Local fakes of remote services the stores talk to (run on 127.0.0.1, random ports)."""
