"""perftune.gate"""
