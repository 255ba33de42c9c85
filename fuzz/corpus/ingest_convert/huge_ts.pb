
Q
e2
ÿÿÿÿÿÿÿÿn*t2sJ6
emailA@Example.com
user_id U-77 	
nameA