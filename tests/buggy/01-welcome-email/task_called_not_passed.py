# fails: answers_before_the_email_is_sent
# add_task gets send_email's result, not the function: the email goes out inline, then the task fails.
class NewUser(BaseModel):
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    name: str = Field(min_length=1, max_length=100)


welcome_app = FastAPI()


@welcome_app.post("/users", status_code=201)
def create_user(user: NewUser, background_tasks: BackgroundTasks) -> NewUser:
    # Send the welcome email (its subject greets user.name) without making the client wait for it.
    background_tasks.add_task(send_email(user.email, f"Welcome, {user.name}!", "Thanks for signing up."))
    return user
