"""Authentication of mail: SPF, DKIM (sign and verify), DMARC, ARC, Authentication-Results."""
