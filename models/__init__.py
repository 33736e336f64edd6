"""hambench.models"""
