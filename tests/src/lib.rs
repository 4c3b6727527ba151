//! End-to-end tests of the LNS live in tests/tests; this library holds their shared helpers.
