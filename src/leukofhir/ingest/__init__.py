"""Reading inputs: HL7 v2 framing and ER7 tokenising, then lab messages."""
