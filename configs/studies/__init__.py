"""Study specs shipped as package data (`bert_tickets.configs.studies`): `bert-tickets study NAME`."""
