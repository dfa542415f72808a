"""The local stand-ins: the CAMS emulator and AWS (moto), OSS, SMQ and Tablestore, each speaking its wire protocol and checking signatures."""
