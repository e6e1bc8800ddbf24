"""Clinical measurements and scores: nodule segmentation and size, Lung-RADS, Brock."""
