"""Test doubles: the fake PowerShell host (`python -m tests.fakes.fakeps`) and its error records."""
