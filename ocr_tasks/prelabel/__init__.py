"""Close the loop: the production model pre-labels the next batch of raw images for PPOCRLabel, hardest first."""
