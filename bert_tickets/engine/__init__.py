"""The engine: one run of IMP or a baseline method, level by level (`run.ImpRun`), and what it is made of: its
folder (`run_folder`), the fine-tuning loops (`training`, and `packed` for K fine-tunings as one model, with
`flat_update` and `device_batches`), masks and how they are made (`masks`, `pruners`, `calibration`), models
(`modeling`), checkpoints, precision and the data and model a run loads (`resources`)."""
