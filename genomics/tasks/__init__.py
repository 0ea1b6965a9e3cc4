"""Lightning tasks for genomics: pretraining (HyenaDNA next-token, Caduceus masked LM) and fine-tuning
(sequence classification). The only genomics package that imports lightning."""
