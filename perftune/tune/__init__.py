"""perftune.tune"""
