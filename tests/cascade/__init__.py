"""Tests of the cascade super-resolution stage."""
