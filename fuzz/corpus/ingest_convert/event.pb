
ö
e1	ÄÚ÷ à'n*t2sJ6
emailA@Example.com
user_id U-77 	
nameAR
domainexample.comZ/

emaila@example.com
domainexample.com