# fails: answers_before_the_email_is_sent
# The email is sent inside the endpoint: every signup waits for the mail server.
class NewUser(BaseModel):
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    name: str = Field(min_length=1, max_length=100)


welcome_app = FastAPI()


@welcome_app.post("/users", status_code=201)
def create_user(user: NewUser, background_tasks: BackgroundTasks) -> NewUser:
    # Send the welcome email (its subject greets user.name) without making the client wait for it.
    send_email(user.email, f"Welcome, {user.name}!", "Thanks for signing up.")
    return user
