"""Releases on the Hugging Face Hub: a ticket or a fine-tuned model as a folder that loads in plain transformers
(`hub`), its model card's sections (`cards`), the folder it is staged in and what may replace it (`folder`), and a
sentence-transformers base's modules (`sentence_modules`). A whole study's release is `studies.release`."""
