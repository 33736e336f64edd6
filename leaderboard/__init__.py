"""hambench.leaderboard"""
