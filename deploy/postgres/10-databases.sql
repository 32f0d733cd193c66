-- Run once by the postgres image, when its volume is first created (as POSTGRES_USER,
-- tradeflow, who owns what it creates): the ledger is POSTGRES_DB; Prefect's server and
-- MLflow's tracking store each get their own database.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
