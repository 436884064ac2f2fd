package synthetic

// Names of the synthetic people and places. The people's names are common
// English names drawn at random, so no record describes a real person; the
// place names are made of two invented halves.

var girlNames = []string{
	"Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia",
	"Grace", "Freya", "Willow", "Florence", "Emily", "Ella", "Poppy", "Evie", "Elsie", "Charlotte",
	"Evelyn", "Sienna", "Daisy", "Phoebe", "Harper", "Sofia", "Alice", "Matilda", "Ruby", "Maya",
	"Chloe", "Jessica", "Amber", "Leah", "Zara", "Aisha", "Hannah", "Megan", "Holly", "Layla",
}

var boyNames = []string{
	"Noah", "Oliver", "George", "Arthur", "Muhammad", "Leo", "Harry", "Oscar", "Archie", "Henry",
	"Theodore", "Freddie", "Jack", "Charlie", "Finley", "Thomas", "Alfie", "Jacob", "Lucas", "Isaac",
	"Teddy", "Tommy", "Joshua", "Max", "William", "James", "Ethan", "Mason", "Reuben", "Jude",
	"Riley", "Dylan", "Kai", "Ryan", "Adam", "Ibrahim", "Logan", "Callum", "Jayden", "Owen",
}

var familyNames = []string{
	"Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson",
	"Roberts", "Robinson", "Thompson", "Wright", "Walker", "White", "Edwards", "Hughes", "Green", "Hall",
	"Lewis", "Harris", "Clarke", "Patel", "Jackson", "Wood", "Turner", "Martin", "Cooper", "Hill",
	"Ward", "Morris", "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Morgan", "Allen",
	"James", "Scott", "Phillips", "Watson", "Davis", "Parker", "Price", "Bennett", "Young", "Griffiths",
	"Mitchell", "Kelly", "Cook", "Carter", "Richardson", "Bailey", "Collins", "Bell", "Shaw", "Murphy",
	"Khan", "Ali", "Hussain", "Begum", "Ahmed", "Nowak", "Kowalski", "Okafor", "Mensah", "Adeyemi",
}

func givenNames(female bool) []string {
	if female {
		return girlNames
	}
	return boyNames
}

// placeHeads and placeTails make 20 x 8 = 160 invented place names.
var (
	placeHeads = []string{
		"Ash", "Bram", "Clay", "Dun", "Elm", "Fen", "Glen", "Hart", "Ivy", "Kes",
		"Lang", "Mar", "Nor", "Oak", "Pen", "Rad", "Stan", "Thorn", "Wex", "Yar",
	}
	placeTails = []string{"bury", "field", "ford", "ham", "ley", "mouth", "ton", "wick"}
)
