DROP TABLE payment_aliases;
