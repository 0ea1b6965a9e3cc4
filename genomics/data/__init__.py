"""DNA input: the tokenizer, sequence-file readers (FASTA, FASTQ, GenBank, BED, labelled tables), windows."""
