"""Presets shipped as package data (`bert_tickets.configs`): `paper.yaml` and `minilm.yaml`."""
