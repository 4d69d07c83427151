"""Long English and Hindi texts shared by the pipeline and end-to-end tests."""

# 150+ words, ~900 characters: far above the 220-character threshold (the old empty-audio bug's case).
LONG_ENGLISH = (
    "The quick brown fox jumps over the lazy dog near the river bank, while the morning mist slowly lifts. "
    "Every day the baker opens his small shop at six and sells fresh bread, warm rolls and sweet cakes. "
    "Children walk to school along the narrow road, laughing and talking about the games they will play. "
    "In the afternoon the sun warms the old stone walls of the church, and the square fills with people. "
    "Farmers bring baskets of apples, pears and plums to the market, and they argue cheerfully about prices. "
    "Later, when the evening comes, families gather around long tables and share stories about their day. "
    "An old man tells the same story about the great storm, and everybody listens as if it were new. "
    "Finally the lights go out one by one, the dogs stop barking, and the whole village sleeps quietly "
    "until the birds begin to sing again at dawn and another ordinary, beautiful day begins once more."
)
LONG_HINDI = (
    "सुबह की ठंडी हवा में गाँव के लोग अपने खेतों की ओर चल पड़ते हैं। बच्चे हँसते हुए स्कूल जाते हैं और रास्ते में "
    "खेलों की बातें करते हैं। दोपहर में सूरज की गर्मी से पुराने मंदिर की दीवारें चमक उठती हैं। बाज़ार में किसान ताज़े "
    "फल और सब्ज़ियाँ बेचते हैं और ग्राहकों से हँसी मज़ाक करते हैं। शाम होते ही परिवार एक साथ बैठकर भोजन करते हैं "
    "और दिन भर की कहानियाँ सुनाते हैं। रात को पूरा गाँव शांति से सो जाता है।"
)
