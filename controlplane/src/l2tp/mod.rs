//! L2TPv2 (RFC 2661), LNS and LAC roles.
