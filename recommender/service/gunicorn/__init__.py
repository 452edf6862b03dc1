"""service/gunicorn"""
