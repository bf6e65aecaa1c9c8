"""What eaglectl knows about SGLang: loader rules per release, their replay, the server argv, launch, supervision."""
