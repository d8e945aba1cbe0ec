"""Everything that talks to AWS. Functions take their boto3 clients as arguments."""
