//! PPP (RFC 1661 and its NCPs and authentication protocols).
