"""The Helius adapter: the paced, retried JSON-RPC/REST client, the pipelined source, the enhanced-
transaction reader.
"""
