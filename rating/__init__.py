"""The rating artifact: calibrated probability, score scaling, stars and reasons, shared by training and serving."""
