"""Tests against real third-party software (Dovecot, ...); see docs/interop.md."""
