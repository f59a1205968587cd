"""The fine-tune application over the core: source 000's Kaggle dog-breed task (the folder
layout, the image pipeline, the training loop and the submission: `ganparity finetune ...`)."""
