"""The rules of mcpsec: every capability as plain functions over a store, no CLI, no drivers."""
