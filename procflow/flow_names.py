"""Flow run names: two random words, as in Prefect (`swift-ocelot`)."""

import random

# ~17 000 pairs, so names repeat far less often than with a few hundred
_ADJECTIVES = ("amber", "agile", "ancient", "arctic", "azure", "bold", "brave", "breezy", "bright", "brisk",
               "calm", "candid", "cheerful", "clever", "cobalt", "cosmic", "crimson", "curious", "dapper",
               "daring", "dashing", "dazzling", "eager", "earnest", "electric", "elegant", "emerald", "fancy",
               "fearless", "festive", "fierce", "frosty", "gentle", "giddy", "glossy", "golden", "graceful",
               "grand", "happy", "hardy", "hidden", "honest", "humble", "icy", "jolly", "jovial", "keen",
               "kind", "lively", "loyal", "lucky", "lunar", "magic", "mellow", "merry", "mighty", "misty",
               "modest", "neat", "nimble", "noble", "olive", "orange", "polite", "proud", "quick", "quiet",
               "radiant", "rapid", "rosy", "royal", "rustic", "scarlet", "serene", "shiny", "silent", "silver",
               "smart", "snowy", "solar", "spry", "steady", "stellar", "sturdy", "sunny", "swift", "tidy",
               "tranquil", "true", "upbeat", "vagabond", "valiant", "velvet", "vivid", "warm", "whimsical",
               "wild", "witty", "wondrous", "zany", "zealous", "zesty")
_ANIMALS = ("aardvark", "albatross", "alpaca", "antelope", "armadillo", "badger", "barracuda", "bat", "beaver",
            "bison", "bobcat", "buffalo", "butterfly", "camel", "capybara", "caribou", "cat", "chameleon",
            "cheetah", "chipmunk", "cobra", "condor", "corgi", "cougar", "coyote", "crab", "crane", "cricket",
            "crow", "deer", "dingo", "dodo", "dolphin", "donkey", "dove", "dragon", "duck", "eagle", "eel",
            "elephant", "elk", "emu", "falcon", "ferret", "finch", "flamingo", "fox", "frog", "gazelle",
            "gecko", "gerbil", "giraffe", "goat", "goose", "gopher", "gorilla", "grouse", "hamster", "hare",
            "hawk", "hedgehog", "heron", "hippo", "hornet", "horse", "hound", "hyena", "ibex", "ibis",
            "iguana", "impala", "jackal", "jaguar", "jellyfish", "kangaroo", "kestrel", "kingfisher", "kiwi",
            "koala", "lemming", "lemur", "leopard", "lion", "lizard", "llama", "lobster", "lynx", "macaw",
            "magpie", "manatee", "marmot", "meerkat", "mink", "mole", "mongoose", "moose", "narwhal", "newt",
            "ocelot", "octopus", "okapi", "orca", "oriole", "osprey", "ostrich", "otter", "owl", "oyster",
            "panda", "panther", "parrot", "peacock", "pelican", "penguin", "pheasant", "pigeon", "platypus",
            "porcupine", "possum", "puffin", "puma", "python", "quail", "quokka", "rabbit", "raccoon", "ram",
            "raven", "reindeer", "rhino", "robin", "salamander", "salmon", "seahorse", "seal", "shark",
            "sheep", "skunk", "sloth", "snail", "sparrow", "spider", "squid", "squirrel", "starfish",
            "stingray", "stork", "swan", "tapir", "tarsier", "tiger", "toad", "tortoise", "toucan", "trout",
            "turkey", "turtle", "urchin", "viper", "vole", "vulture", "walrus", "wasp", "weasel", "whale",
            "wolf", "wombat", "woodpecker", "yak", "zebra")


def random_flow_run_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}"
